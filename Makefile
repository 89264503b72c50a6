# Everyday commands for the Docker stack. Every target goes through scripts/compose.sh,
# which works with the compose plugin or docker-compose, with or without an image registry.
COMPOSE := scripts/compose.sh
REQUESTS ?= 300

.PHONY: help base-images build up down restart ps logs test load prometheus clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

base-images: ## Make the local base images from Debian packages (no registry needed).
	scripts/docker-base-images.sh

build: ## Build the images.
	$(COMPOSE) build

up: ## Build and start the stack, then wait until every container is healthy.
	$(COMPOSE) up -d --build
	$(COMPOSE) wait

prometheus: ## Like up, plus a Prometheus scraping the sidecars (http://localhost:9090).
	$(COMPOSE) --profile prometheus up -d --build
	$(COMPOSE) wait

down: ## Stop and remove the containers (the volumes stay).
	$(COMPOSE) --profile prometheus down

restart: down up ## Recreate the stack.

ps: ## Show the containers and their health.
	$(COMPOSE) ps

logs: ## Follow the logs of every container.
	$(COMPOSE) logs -f --tail=50

test: ## Run the system test (brings the stack up unless it runs, then takes it down).
	scripts/test-system.sh

load: ## Send REQUESTS requests (default 300) across the three services.
	scripts/load.sh $(REQUESTS)

clean: ## Remove the containers, the volumes (stored logs included) and the built images.
	$(COMPOSE) --profile prometheus down -v --remove-orphans --rmi all
	rm -rf target/docker-bin
