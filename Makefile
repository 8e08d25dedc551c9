.PHONY: run test lint bench
run:  ## set up and run web, worker and beat
	./scripts/run.sh
test:  ## set up and run the whole suite against PostgreSQL and Redis
	./scripts/test.sh
lint:
	.venv/bin/ruff check . && .venv/bin/mypy .
