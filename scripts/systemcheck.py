#!/usr/bin/env python3
"""Checks for scripts/test-system.sh: speaks HTTP to a running stack and asserts the contract.

Each subcommand is one step of the system test; it prints what it checked and exits 1 with
a message naming what failed. Only the Python standard library is used.

    endpoints                       every endpoint of the contract answers as specified
    traffic SET COUNT [--rate R]    send requests with unique request ids, record them in SET
    delivered SET... [--timeout S]  every recorded request reached the aggregator exactly
                                    once per service, with the enrichment fields
    follow                          one request id followed across the three services
    metrics [--timeout S]           the metrics sidecars serve enriched samples
    prometheus [--timeout S]        a real Prometheus scrapes the metrics sidecars cleanly
    promtool-input NAME             print one endpoint's /metrics (to feed promtool)
    cross                           (cluster) a record sent through one aggregator is read
                                    through the other, and its retry there is stored once
    clear                           POST /logs/clear answers as specified

Settings come from the environment, with the contract's defaults: the host ports
(LOG_AGGREGATOR_PORT, USER_SERVICE_PORT, ...), ENVIRONMENT, AGGREGATOR_TOKEN, and
TEST_STATE_DIR (where traffic sets are recorded) and TEST_RUN_ID (prefix of request ids).
With TEST_CLUSTER=1 (the compose profile `cluster`) there are two aggregators, the second
on LOG_AGGREGATOR_2_PORT (8001): every aggregator check runs against both, and every
delivered record must be found exactly once through each.
"""

import concurrent.futures
import gzip
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

HOST = "127.0.0.1"
HTTP_TIMEOUT_SECONDS = 10
POLL_INTERVAL_SECONDS = 0.5
TRAFFIC_WORKERS = 4
QUERY_WORKERS = 6

SERVICES = {
    "user-service": ("USER_SERVICE_PORT", 8081, "users"),
    "product-service": ("PRODUCT_SERVICE_PORT", 8082, "products"),
    "order-service": ("ORDER_SERVICE_PORT", 8083, "orders"),
}
METRICS_SIDECARS = {
    "user-service": ("USER_METRICS_PORT", 9091),
    "product-service": ("PRODUCT_METRICS_PORT", 9092),
    "order-service": ("ORDER_METRICS_PORT", 9093),
}
LOGGING_SIDECARS = {
    "user-service": ("USER_LOGGING_PORT", 9101),
    "product-service": ("PRODUCT_LOGGING_PORT", 9102),
    "order-service": ("ORDER_LOGGING_PORT", 9103),
}
# Fields every stored application record must carry, and the request-log fields.
RECORD_FIELDS = ("timestamp", "service", "level", "message")
REQUEST_FIELDS = ("method", "path", "status", "duration_ms", "request_id")
ENRICHMENT_FIELDS = ("sidecar_timestamp", "sidecar_forwarded_by", "environment")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


class CheckFailed(Exception):
    pass


def env_port(name, default):
    value = os.environ.get(name) or str(default)
    if not value.isdigit():
        raise CheckFailed(f"{name}={value!r} is not a port number")
    return int(value)


def aggregator_base():
    return f"http://{HOST}:{env_port('LOG_AGGREGATOR_PORT', 8000)}"


def cluster():
    return os.environ.get("TEST_CLUSTER") == "1"


def aggregator_bases():
    """(name, base URL) of every aggregator of the stack: one, or two in the cluster."""
    bases = [("log-aggregator", aggregator_base())]
    if cluster():
        bases.append(("log-aggregator-2", f"http://{HOST}:{env_port('LOG_AGGREGATOR_2_PORT', 8001)}"))
    return bases


def service_base(service):
    name, default, _ = SERVICES[service]
    return f"http://{HOST}:{env_port(name, default)}"


def environment():
    return os.environ.get("ENVIRONMENT") or "development"


def auth_headers():
    token = os.environ.get("AGGREGATOR_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def ok(message):
    print(f"  ok   {message}", flush=True)


def fail(message):
    raise CheckFailed(message)


def http(method, url, body=None, headers=None):
    """One request; returns (status, headers, body bytes) for any status, fails on no answer."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_SECONDS) as res:
            return res.status, res.headers, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()
    except (urllib.error.URLError, OSError) as e:
        raise CheckFailed(f"{method} {url}: no answer ({e})") from e


def json_body(method, url, raw, expect_status=None):
    status, _, _ = raw
    if expect_status is not None and status != expect_status:
        fail(f"{method} {url}: expected {expect_status}, got {status}: {raw[2][:300]!r}")
    try:
        return json.loads(raw[2])
    except ValueError as e:
        fail(f"{method} {url}: body is not JSON ({e}): {raw[2][:300]!r}")


def get_json(url, expect_status=200, headers=None):
    return json_body("GET", url, http("GET", url, headers=headers), expect_status)


def post_json(url, payload, expect_status, headers=None, content_type="application/json"):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    hdrs = {"Content-Type": content_type, **(headers or {})}
    return json_body("POST", url, http("POST", url, body, hdrs), expect_status)


def expect(cond, message):
    if not cond:
        fail(message)


def wait_until(what, timeout, probe):
    """Polls probe() until it returns a true value; fails naming `what` and the last reason."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            result = probe()
            if result:
                return result
        except CheckFailed as e:
            last = str(e)
        if time.monotonic() >= deadline:
            fail(f"{what}: not reached within {timeout:.0f} s" + (f" (last: {last})" if last else ""))
        time.sleep(POLL_INTERVAL_SECONDS)


# --- endpoints -----------------------------------------------------------------------------


def check_error_body(what, body, status):
    expect(isinstance(body, dict) and body, f"{what}: error body is not a JSON object: {body!r}")
    expect(
        any(isinstance(body.get(k), str) and body.get(k) for k in ("error", "message", "detail")),
        f"{what}: error body names no problem: {body!r}",
    )


def check_service(service):
    base = service_base(service)
    _, _, collection = SERVICES[service]
    health = get_json(f"{base}/health")
    expect(
        health.get("status") == "healthy" and health.get("service") == service,
        f"{service} /health: {health!r}",
    )
    ok(f"{service}: GET /health -> {health}")

    rid = f"{run_id()}-endpoint-{service}"
    status, headers, body = http("GET", f"{base}/{collection}", headers={"X-Request-Id": rid})
    expect(status == 200, f"{service} GET /{collection}: status {status}")
    expect(headers.get("X-Request-Id") == rid, f"{service}: X-Request-Id not returned ({headers.get('X-Request-Id')!r})")
    listing = json.loads(body)
    expect(listing, f"{service} GET /{collection}: empty answer")
    ok(f"{service}: GET /{collection} -> 200, X-Request-Id echoed")

    status, headers, _ = http("GET", f"{base}/health")
    expect(bool(headers.get("X-Request-Id")), f"{service}: no X-Request-Id generated")
    ok(f"{service}: X-Request-Id generated when absent ({headers.get('X-Request-Id')})")

    one = get_json(f"{base}/{collection}/1")
    expect(one.get("id") == 1, f"{service} GET /{collection}/1: {one!r}")
    check_error_body(f"{service} unknown id", get_json(f"{base}/{collection}/999999", 404), 404)
    check_error_body(f"{service} malformed id", get_json(f"{base}/{collection}/abc", 400), 400)
    ok(f"{service}: GET /{collection}/1 -> 200, unknown id -> 404, malformed id -> 400 (JSON errors)")

    status, headers, body = http("GET", f"{base}/metrics")
    expect(status == 200, f"{service} /metrics: status {status}")
    expect("text/plain" in (headers.get("Content-Type") or ""), f"{service} /metrics content type {headers.get('Content-Type')!r}")
    expect(b"# TYPE " in body, f"{service} /metrics: no TYPE line")
    ok(f"{service}: GET /metrics -> Prometheus text")


def check_orders():
    base = service_base("order-service")
    order = post_json(f"{base}/orders", {"user_id": 1, "product_id": 1, "quantity": 1}, 201)
    expect(order.get("user_id") == 1 and order.get("product_id") == 1 and "id" in order, f"new order: {order!r}")
    ok(f"order-service: POST /orders -> 201 {order}")
    again = get_json(f"{base}/orders/{order['id']}")
    expect(again.get("id") == order["id"], f"GET /orders/{order['id']}: {again!r}")
    ok("order-service: GET /orders/{id} finds the new order")
    body = post_json(f"{base}/orders", {"user_id": 999999, "product_id": 1, "quantity": 1}, 404)
    check_error_body("unknown user", body, 404)
    expect("user" in json.dumps(body).lower(), f"404 does not name the user: {body!r}")
    body = post_json(f"{base}/orders", {"user_id": 1, "product_id": 999999, "quantity": 1}, 404)
    expect("product" in json.dumps(body).lower(), f"404 does not name the product: {body!r}")
    check_error_body("malformed order", post_json(f"{base}/orders", b"{not json", 400), 400)
    ok("order-service: unknown user -> 404, unknown product -> 404, malformed body -> 400")


def check_aggregator(name, base):
    auth = auth_headers()
    health = get_json(f"{base}/health")
    expect(
        health.get("status") == "healthy"
        and health.get("service") == "log-aggregator"
        and isinstance(health.get("logs_stored"), int),
        f"{name} /health: {health!r}",
    )
    ok(f"{name}: GET /health -> {health}")

    index = get_json(f"{base}/", headers={"Accept": "application/json"})
    expect(isinstance(index, dict) and index, f"GET / (JSON): {index!r}")
    status, headers, body = http("GET", f"{base}/", headers={"Accept": "text/html"})
    expect(status == 200 and "text/html" in (headers.get("Content-Type") or ""), f"GET / (browser): {status} {headers.get('Content-Type')}")
    ok(f"{name}: GET / -> JSON index for curl, a page for a browser")

    page = get_json(f"{base}/logs", headers=auth)
    expect(
        isinstance(page.get("total"), int) and isinstance(page.get("logs"), list) and "next_cursor" in page,
        f"GET /logs shape: { {k: type(v).__name__ for k, v in page.items()} }",
    )
    count = get_json(f"{base}/logs/count", headers=auth)
    expect(
        isinstance(count.get("total_logs"), int)
        and isinstance(count.get("by_service"), dict)
        and isinstance(count.get("by_level"), dict),
        f"GET /logs/count: {count!r}",
    )
    ok(f"{name}: GET /logs and GET /logs/count answer (total_logs {count['total_logs']})")

    # Direct ingestion, in each accepted form, under a service name of the test's own.
    rid = f"{run_id()}-ingest-{name}"
    test_service = "system-test"

    def record(n):
        return {
            "timestamp": now_rfc3339(),
            "service": test_service,
            "level": "INFO",
            "message": f"System test record {n}.",
            "request_id": rid,
            "event_id": f"{rid}-{n}",
        }

    answer = post_json(f"{base}/logs", record(1), 200, auth)
    expect(answer.get("status") == "success" and answer.get("accepted") == 1, f"POST one object: {answer!r}")
    answer = post_json(f"{base}/logs", [record(2), record(3)], 200, auth)
    expect(answer.get("accepted") == 2, f"POST an array: {answer!r}")
    ndjson = "\n".join(json.dumps(record(n)) for n in (4, 5)).encode() + b"\n"
    answer = post_json(f"{base}/logs", ndjson, 200, auth, "application/x-ndjson")
    expect(answer.get("accepted") == 2, f"POST NDJSON: {answer!r}")
    gz = gzip.compress(json.dumps([record(6)]).encode())
    answer = post_json(f"{base}/logs", gz, 200, {**auth, "Content-Encoding": "gzip"})
    expect(answer.get("accepted") == 1, f"POST gzip: {answer!r}")
    ok(f"{name}: POST /logs takes an object, an array, NDJSON and gzip")

    answer = post_json(f"{base}/logs", record(1), 200, auth)
    expect(answer.get("duplicates") == 1, f"a repeated event_id is not reported as a duplicate: {answer!r}")
    stored = get_json(f"{base}/logs?request_id={rid}&limit=100", headers=auth)
    expect(stored.get("total") == 6, f"{rid}: expected 6 records after a repeated event_id, found {stored.get('total')}")
    expect(all("aggregator_received_at" in r for r in stored["logs"]), "a stored record lacks aggregator_received_at")
    ok(f"{name}: a repeated event_id is acknowledged, not stored twice; records gain aggregator_received_at")

    # Paging and order: six records, two at a time, oldest first.
    seen, cursor, pages = [], None, 0
    while True:
        url = f"{base}/logs?request_id={rid}&limit=2&order=asc" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
        page = get_json(url, headers=auth)
        seen += [r.get("event_id") for r in page["logs"]]
        pages += 1
        cursor = page.get("next_cursor")
        if not cursor:
            break
        expect(pages < 10, "paging does not end")
    expect(seen == [f"{rid}-{n}" for n in range(1, 7)], f"paging asc gave {seen}")
    newest = get_json(f"{base}/logs?request_id={rid}&limit=1&order=desc", headers=auth)
    expect([r.get("event_id") for r in newest["logs"]] == [f"{rid}-6"], f"order=desc limit=1: {newest['logs']!r}")
    filtered = get_json(f"{base}/logs?service={test_service}&level=INFO&q=record%204&limit=1000", headers=auth)
    expect(any(r.get("event_id") == f"{rid}-4" for r in filtered["logs"]), "filters service+level+q miss a record")
    ok(f"{name}: cursor paging, order=desc, filters service/level/q/request_id")

    # Bad input: a clear error, nothing stored.
    before = get_json(f"{base}/logs?request_id={rid}&limit=1", headers=auth)["total"]
    check_error_body("malformed JSON", post_json(f"{base}/logs", b'{"a":', 400, auth), 400)
    bad_nd = json.dumps(record(7)).encode() + b"\n{oops\n"
    body = post_json(f"{base}/logs", bad_nd, 400, auth, "application/x-ndjson")
    expect("2" in json.dumps(body), f"NDJSON error does not name line 2: {body!r}")
    status, _, _ = http("POST", f"{base}/logs", b"<log/>", {"Content-Type": "application/xml", **auth})
    expect(status == 415, f"wrong content type: expected 415, got {status}")
    after = get_json(f"{base}/logs?request_id={rid}&limit=1", headers=auth)["total"]
    expect(after == before, f"bad input changed the store ({before} -> {after} records)")
    ok(f"{name}: malformed JSON -> 400, bad NDJSON line -> 400 naming it, application/xml -> 415, nothing stored")
    if auth:
        status, _, _ = http("POST", f"{base}/logs", json.dumps(record(8)).encode(), {"Content-Type": "application/json"})
        expect(status == 401, f"no token: expected 401, got {status}")
        ok(f"{name}: missing bearer token -> 401")

    status, headers, body = http("GET", f"{base}/metrics")
    expect(status == 200 and b"# TYPE " in body, f"aggregator /metrics: {status}")
    ok(f"{name}: GET /metrics -> Prometheus text")


def check_sidecars():
    for service, (name, default) in LOGGING_SIDECARS.items():
        base = f"http://{HOST}:{env_port(name, default)}"
        status, _, body = http("GET", f"{base}/health")
        expect(status == 200, f"{service}-logging-sidecar /health: {status} {body[:200]!r}")
        status, _, body = http("GET", f"{base}/metrics")
        expect(status == 200 and b"# TYPE " in body, f"{service}-logging-sidecar /metrics: {status}")
        ok(f"{service}-logging-sidecar: GET /health, GET /metrics")
    for service, (name, default) in METRICS_SIDECARS.items():
        base = f"http://{HOST}:{env_port(name, default)}"
        status, _, body = http("GET", f"{base}/health")
        expect(status == 200, f"{service}-metrics-sidecar /health: {status} {body[:200]!r}")
        ok(f"{service}-metrics-sidecar: GET /health")


def cmd_endpoints(_args):
    for service in SERVICES:
        check_service(service)
    check_orders()
    for name, base in aggregator_bases():
        check_aggregator(name, base)
    check_sidecars()


# --- traffic and delivery ------------------------------------------------------------------


def run_id():
    return os.environ.get("TEST_RUN_ID") or "systest"


def state_dir():
    d = os.environ.get("TEST_STATE_DIR") or "."
    os.makedirs(d, exist_ok=True)
    return d


def now_rfc3339():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


# What one request of each kind logs: one request line in each service it touches.
KINDS = (
    ("user", "user-service", "GET", "/users/{n}", None, ("user-service",)),
    ("product", "product-service", "GET", "/products/{n}", None, ("product-service",)),
    (
        "order",
        "order-service",
        "POST",
        "/orders",
        {"user_id": 1, "product_id": 2, "quantity": 1},
        ("order-service", "user-service", "product-service"),
    ),
)


def send_one(set_name, i, not_before=None):
    if not_before is not None:
        time.sleep(max(0.0, not_before - time.monotonic()))
    kind, service, method, path, payload, touched = KINDS[i % len(KINDS)]
    rid = f"{run_id()}-{set_name}-{kind}-{i}"
    url = service_base(service) + path.format(n=1 + i % 3)
    body = json.dumps(payload).encode() if payload else None
    headers = {"X-Request-Id": rid}
    if body:
        headers["Content-Type"] = "application/json"
    try:
        status, _, _ = http(method, url, body, headers)
    except CheckFailed as e:
        return None, str(e)
    if status >= 300:
        return None, f"{method} {url} answered {status}"
    return {"request_id": rid, "services": list(touched)}, None


def cmd_traffic(args):
    """Sends COUNT requests (users, products, orders in turn); records those answered.

    With `--rate R` the requests are spread at R a second, so that a component can be
    killed while the traffic and its forwarding are in flight.
    """
    set_name, count = args[0], int(args[1])
    rate = float(args[args.index("--rate") + 1]) if "--rate" in args else None
    start = time.monotonic()

    def schedule(i):
        return send_one(set_name, i, start + i / rate if rate else None)

    path = os.path.join(state_dir(), f"set-{set_name}.jsonl")
    answered, errors = 0, []
    with open(path, "w") as out, concurrent.futures.ThreadPoolExecutor(TRAFFIC_WORKERS) as pool:
        for rec, err in pool.map(schedule, range(count)):
            if rec:
                out.write(json.dumps(rec) + "\n")
                out.flush()
                answered += 1
            else:
                errors.append(err)
    ok(f"traffic set {set_name!r}: {answered}/{count} requests answered")
    if errors:
        print(f"  note {len(errors)} requests unanswered (not expected in the logs), first: {errors[0]}")
    expect(answered > 0, f"traffic set {set_name!r}: no request was answered")


def load_sets(names):
    expected = {}
    for name in names:
        with open(os.path.join(state_dir(), f"set-{name}.jsonl")) as f:
            for line in f:
                rec = json.loads(line)
                expected[rec["request_id"]] = rec["services"]
    return expected


def request_logs(request_id, base=None):
    """The stored request-log records carrying `request_id`, whatever the page size."""
    base, auth, records, cursor = base or aggregator_base(), auth_headers(), [], None
    while True:
        url = f"{base}/logs?request_id={urllib.parse.quote(request_id)}&limit=1000"
        if cursor:
            url += f"&cursor={urllib.parse.quote(cursor)}"
        page = get_json(url, headers=auth)
        records += page["logs"]
        cursor = page.get("next_cursor")
        if not cursor:
            return [r for r in records if r.get("request_id") == request_id and "method" in r and "status" in r]


def count_by_service(records):
    counts = {}
    for r in records:
        counts[r.get("service")] = counts.get(r.get("service"), 0) + 1
    return counts


def check_enriched(record):
    for field in RECORD_FIELDS + REQUEST_FIELDS + ENRICHMENT_FIELDS + ("aggregator_received_at",):
        expect(field in record, f"stored record lacks {field!r}: {record!r}")
    service = record["service"]
    expect(record["sidecar_forwarded_by"] == f"{service}-logging-sidecar", f"sidecar_forwarded_by: {record!r}")
    expect(record["environment"] == environment(), f"environment {record['environment']!r} != {environment()!r}")
    for field in ("timestamp", "sidecar_timestamp"):
        expect(RFC3339.match(str(record[field])) is not None, f"{field} is not RFC 3339: {record[field]!r}")


def cmd_delivered(args):
    """Every recorded request reached the aggregator exactly once per service it touched."""
    timeout = 120.0
    if "--timeout" in args:
        i = args.index("--timeout")
        timeout = float(args[i + 1])
        args = args[:i] + args[i + 2 :]
    expected = load_sets(args)
    expect(expected, f"no recorded request in sets {args}")
    pending = dict(expected)
    found = {}
    deadline = time.monotonic() + timeout
    with concurrent.futures.ThreadPoolExecutor(QUERY_WORKERS) as pool:
        while pending:
            for rid, records in zip(list(pending), pool.map(request_logs, list(pending))):
                counts = count_by_service(records)
                if all(counts.get(s, 0) >= 1 for s in pending[rid]):
                    found[rid] = records
                    del pending[rid]
            if not pending:
                break
            if time.monotonic() >= deadline:
                sample = list(pending.items())[:5]
                fail(
                    f"{len(pending)} of {len(expected)} requests never reached the aggregator "
                    f"within {timeout:.0f} s (lost), e.g. {sample}"
                )
            time.sleep(POLL_INTERVAL_SECONDS * 2)
        # Everything arrived; now look again for duplicates that came in late, through
        # every aggregator (in the cluster, each must show each record exactly once).
        duplicates = []
        for name, base in aggregator_bases():
            rids = list(expected)
            for rid, records in zip(rids, pool.map(lambda r, b=base: request_logs(r, b), rids)):
                counts = count_by_service(records)
                for s in expected[rid]:
                    if counts.get(s, 0) != 1:
                        duplicates.append((name, rid, s, counts.get(s, 0)))
                for r in records:
                    check_enriched(r)
    expect(
        not duplicates,
        f"{len(duplicates)} request logs missing or stored more than once (aggregator, request, "
        f"service, copies), e.g. {duplicates[:5]}",
    )
    lines = sum(len(v) for v in expected.values())
    through = " through " + " and ".join(n for n, _ in aggregator_bases()) if cluster() else ""
    ok(
        f"sets {', '.join(args)}: {len(expected)} requests, {lines} request log lines, each stored exactly "
        f"once{through}, enriched (sidecar_timestamp, sidecar_forwarded_by, environment={environment()})"
    )


def cmd_follow(_args):
    rid = f"{run_id()}-follow"
    base = service_base("order-service")
    post_json(f"{base}/orders", {"user_id": 2, "product_id": 3, "quantity": 1}, 201, {"X-Request-Id": rid})
    records = wait_until(
        f"request {rid} in all three services",
        60,
        lambda: (lambda rs: rs if set(count_by_service(rs)) >= set(SERVICES) else None)(request_logs(rid)),
    )
    for r in records:
        check_enriched(r)
    path = " -> ".join(f"{r['service']} {r['method']} {r['path']} {r['status']}" for r in records)
    ok(f"request {rid} followed across services: {path}")


# --- metrics -------------------------------------------------------------------------------

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_samples(text):
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        expect(m is not None, f"not a sample line: {line!r}")
        samples.append((m.group(1), dict(LABEL.findall(m.group(3) or "")), m.group(4)))
    return samples


def enriched_metrics(service):
    name, default = METRICS_SIDECARS[service]
    url = f"http://{HOST}:{env_port(name, default)}/metrics"
    status, _, body = http("GET", url)
    expect(status == 200, f"{url}: status {status}")
    text = body.decode()
    samples = parse_samples(text)
    wanted = {"sidecar": "true", "environment": environment(), "service": service}
    for metric, labels, _ in samples:
        for k, v in wanted.items():
            expect(labels.get(k) == v, f"{url}: {metric}{labels} lacks {k}={v!r}")
    app = [s for s in samples if s[0] == "http_requests_total"]
    expect(app, f"{url}: no http_requests_total sample from {service} yet")
    # HELP and TYPE lines are kept: every family the service declares is declared again.
    status, _, own = http("GET", f"{service_base(service)}/metrics")
    expect(status == 200, f"{service} /metrics: status {status}")
    for line in own.decode().splitlines():
        if line.startswith("# TYPE ") or line.startswith("# HELP "):
            expect(line in text, f"{url}: the service's line {line!r} is not kept")
    # The scrape reports on itself: an `up` gauge at 1.
    up = [v for name, _, v in samples if name == "up" or name.endswith("_up")]
    expect(up == ["1"], f"{url}: expected one up gauge at 1, found {up}")
    return len(samples)


def cmd_metrics(args):
    timeout = float(args[args.index("--timeout") + 1]) if "--timeout" in args else 60.0
    for service in METRICS_SIDECARS:
        n = wait_until(f"{service}-metrics-sidecar enriched samples", timeout, lambda s=service: enriched_metrics(s))
        ok(f"{service}-metrics-sidecar: {n} samples, each with sidecar=\"true\", environment, service; HELP/TYPE kept; up=1")


def prometheus_sees_sidecars():
    base = f"http://{HOST}:{env_port('PROMETHEUS_PORT', 9090)}"
    targets = get_json(f"{base}/api/v1/targets")["data"]["activeTargets"]
    sidecars = [t for t in targets if t["labels"].get("job") == "metrics-sidecars"]
    expect(len(sidecars) == len(METRICS_SIDECARS), f"Prometheus has {len(sidecars)} metrics-sidecar targets")
    down = [(t["labels"]["instance"], t["health"], t.get("lastError")) for t in sidecars if t["health"] != "up"]
    expect(not down, f"Prometheus targets not up: {down}")
    query = urllib.parse.quote('count by (service) (http_requests_total{sidecar="true"})')
    result = get_json(f"{base}/api/v1/query?query={query}")["data"]["result"]
    services = sorted(r["metric"].get("service") for r in result)
    expect(services == sorted(METRICS_SIDECARS), f"Prometheus has enriched series for {services} only")
    return services


def cmd_prometheus(args):
    timeout = float(args[args.index("--timeout") + 1]) if "--timeout" in args else 60.0
    services = wait_until("Prometheus scraping the metrics sidecars", timeout, prometheus_sees_sidecars)
    ok(f"Prometheus scrapes the 3 metrics sidecars cleanly; enriched series for {', '.join(services)}")


def cmd_promtool_input(args):
    name = args[0]
    ports = {"aggregator": env_port("LOG_AGGREGATOR_PORT", 8000)}
    for service, (var, default, _) in SERVICES.items():
        ports[service] = env_port(var, default)
    for service, (var, default) in METRICS_SIDECARS.items():
        ports[f"{service}-metrics-sidecar"] = env_port(var, default)
    for service, (var, default) in LOGGING_SIDECARS.items():
        ports[f"{service}-logging-sidecar"] = env_port(var, default)
    status, _, body = http("GET", f"http://{HOST}:{ports[name]}/metrics")
    expect(status == 200, f"{name} /metrics: status {status}")
    sys.stdout.buffer.write(body)


def cmd_clear(_args):
    base, auth = aggregator_base(), auth_headers()
    before = get_json(f"{base}/logs/count", headers=auth)["total_logs"]
    answer = post_json(f"{base}/logs/clear", b"", 200, auth)
    expect(answer.get("status") == "success" and isinstance(answer.get("cleared"), int), f"POST /logs/clear: {answer!r}")
    expect(answer["cleared"] >= before, f"cleared {answer['cleared']} of {before} records")
    # Health checks keep logging, so a few records may arrive right after the clear. In the
    # cluster, the other aggregators see the same (cleared) store.
    for name, other in aggregator_bases():
        after = get_json(f"{other}/logs/count", headers=auth)["total_logs"]
        expect(after < before, f"{name}: the store still holds {after} records after clearing {answer['cleared']}")
    ok(f"log-aggregator: POST /logs/clear cleared {answer['cleared']} records" + (", seen cleared through both aggregators" if cluster() else ""))


def cmd_cross(_args):
    """A record sent through one aggregator is read through the other, in both directions,
    and its retry through the other aggregator is acknowledged and stored once."""
    expect(cluster(), "cross needs the cluster (TEST_CLUSTER=1)")
    auth = auth_headers()
    bases = aggregator_bases()
    for (src_name, src), (dst_name, dst) in (bases, bases[::-1]):
        rid = f"{run_id()}-cross-{src_name}"
        record = {
            "timestamp": now_rfc3339(),
            "service": "system-test",
            "level": "WARN",
            "message": f"Sent through {src_name}, read through {dst_name}.",
            "request_id": rid,
            "event_id": f"{rid}-1",
        }
        answer = post_json(f"{src}/logs", record, 200, auth)
        expect(answer.get("accepted") == 1, f"POST through {src_name}: {answer!r}")
        url = f"{dst}/logs?request_id={rid}&limit=10"
        found = wait_until(f"{rid} visible through {dst_name}", 10, lambda u=url: get_json(u, headers=auth)["logs"])
        expect(len(found) == 1 and found[0].get("message") == record["message"], f"through {dst_name}: {found!r}")
        ok(f"a record sent through {src_name} is read through {dst_name}")
        # The sidecar's retry of a batch may go to another aggregator: stored once.
        answer = post_json(f"{dst}/logs", record, 200, auth)
        expect(answer.get("duplicates") == 1, f"retry through {dst_name} not reported as a duplicate: {answer!r}")
        for name, base in bases:
            total = get_json(f"{base}/logs?request_id={rid}&limit=10", headers=auth)["total"]
            expect(total == 1, f"{name}: {rid} stored {total} times after a retry through {dst_name}")
        ok(f"its retry through {dst_name} is acknowledged as a duplicate; stored once, seen once through both")


COMMANDS = {
    "endpoints": cmd_endpoints,
    "traffic": cmd_traffic,
    "delivered": cmd_delivered,
    "follow": cmd_follow,
    "metrics": cmd_metrics,
    "promtool-input": cmd_promtool_input,
    "prometheus": cmd_prometheus,
    "cross": cmd_cross,
    "clear": cmd_clear,
}


def main(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        COMMANDS[argv[1]](argv[2:])
    except CheckFailed as e:
        print(f"  FAIL {e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
