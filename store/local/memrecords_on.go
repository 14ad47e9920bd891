//go:build voicering_memrecords

package local

// memoryRecords: this binary keeps soft-state record entries in memory,
// for measurement only (memrecords.go).
const memoryRecords = true
