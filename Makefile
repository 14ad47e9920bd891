# `make test` is the README's test command and what .ci/run calls.
.PHONY: test bench

# Every test, with the race detector.
test:
	go test -race -count=1 -timeout 20m ./...

# The benchmarks whose figures BENCHMARKS.md records.
bench:
	go test -run '^$$' -bench . ./coding ./store/...
