//go:build !voicering_memrecords

package local

// memoryRecords is false in every build but the measurement one
// (memrecords.go).
const memoryRecords = false
