package main

import (
	"testing"

	"github.com/voicering/voicering/store/bench"
)

func TestParseClass(t *testing.T) {
	tests := []struct {
		in      string
		want    bench.Class
		wantErr bool
	}{
		{"200x480kB", bench.Class{Count: 200, Size: 480_000}, false},
		{"4x64MiB", bench.Class{Count: 4, Size: 64 << 20}, false},
		{" 1X8mib ", bench.Class{Count: 1, Size: 8 << 20}, false},
		{"10x1.5MB", bench.Class{Count: 10, Size: 1_500_000}, false},
		{"10x100", bench.Class{Count: 10, Size: 100}, false},
		{"480kB", bench.Class{}, true},
		{"ax1MB", bench.Class{}, true},
		{"2x0", bench.Class{}, true},
		{"2x3furlongs", bench.Class{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseClass(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseClass(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestBenchUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"argument", []string{"bench", "extra"}},
		{"bad scheme", []string{"bench", "--needed", "5", "--total", "4"}},
		{"bad replicas", []string{"bench", "--replicas", "two"}},
		{"bad class", []string{"bench", "--objects", "lots"}},
		{"bad big", []string{"bench", "--big", "huge"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if out, code := run(t, tt.args...); code != 2 {
				t.Errorf("exit %d, want 2 (usage): %s", code, out)
			}
		})
	}
}
