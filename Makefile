# Everyday commands for the Docker stack. Every target goes through scripts/compose.sh,
# which works with the compose plugin or docker-compose, with or without an image registry.
COMPOSE := scripts/compose.sh
RATE ?= 500
DURATION ?= 10s
REQUESTS ?= 300

.PHONY: help base-images build up down restart ps logs test system-test load prometheus clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

base-images: ## Make the local base images from Debian packages (no registry needed).
	scripts/docker-base-images.sh

build: ## Build the images.
	$(COMPOSE) build

up: ## Build and start the stack, then wait until every container is healthy.
	scripts/up.sh

prometheus: ## Like up, plus a Prometheus scraping the sidecars (http://localhost:9090).
	scripts/up.sh --profile prometheus

down: ## Stop and remove the containers (the volumes stay).
	$(COMPOSE) --profile prometheus down

restart: down up ## Recreate the stack.

ps: ## Show the containers and their health.
	$(COMPOSE) ps

logs: ## Follow the logs of every container.
	$(COMPOSE) logs -f --tail=50

test: ## Every test: the Rust suite, then the Docker system test (scripts/test.sh).
	scripts/test.sh

system-test: ## The Docker system test alone (brings the stack up unless it runs, then down).
	scripts/test-system.sh

load: ## Traffic for the running stack: scripts/load.sh at RATE for DURATION, else REQUESTS requests.
	@if [ -x scripts/load.sh ]; then \
		scripts/load.sh --rate $(RATE) --duration $(DURATION); \
	else \
		dir=$$(mktemp -d); TEST_RUN_ID=load-$$(date +%s) TEST_STATE_DIR=$$dir python3 scripts/systemcheck.py traffic load $(REQUESTS); rm -rf $$dir; \
	fi

clean: ## Remove the containers, the volumes (stored logs included) and the built images.
	$(COMPOSE) --profile prometheus down -v --remove-orphans --rmi all
	docker image prune -f --filter label=org.sidecar-obs.stage=build
	rm -rf target/docker-bin
