# `make test` is the README's test command and what .ci/run calls.
.PHONY: test bench

# Every test, with the race detector.
test:
	@command -v sipp >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq sip-tester; } || echo "sipp missing: install Debian's sip-tester (the SIP interop tests need it)"
	go test -race -count=1 -timeout 20m ./...

# The benchmarks whose figures BENCHMARKS.md records.
bench:
	go test -run '^$$' -bench . ./coding ./store/...
