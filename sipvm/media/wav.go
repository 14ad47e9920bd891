package media

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// SampleRate is the rate of all audio here: 8 kHz, G.711's.
const SampleRate = 8000

// UnknownSize is the RIFF and data chunk size written in the header of a
// WAV whose length is not known when its header is written (a recording
// streamed while the caller speaks). Readers here treat it as "to the end
// of the stream"; PatchSizes fixes it once the length is known.
const UnknownSize = 0xFFFFFFFF

// HeaderSize is the size of the WAV header WriteHeader writes.
const HeaderSize = 44

// ErrWAV marks a WAV this package cannot read: not RIFF/WAVE, or not
// 16-bit PCM mono at 8 kHz.
var ErrWAV = errors.New("media: not a 16-bit PCM mono 8 kHz WAV")

// WriteHeader writes the 44-byte header of a 16-bit PCM mono 8 kHz WAV
// holding dataSize bytes of samples; UnknownSize when not yet known.
func WriteHeader(w io.Writer, dataSize uint32) error {
	var h [HeaderSize]byte
	riff := uint32(UnknownSize)
	if dataSize != UnknownSize {
		riff = 36 + dataSize
	}
	copy(h[0:], "RIFF")
	binary.LittleEndian.PutUint32(h[4:], riff)
	copy(h[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(h[16:], 16)
	binary.LittleEndian.PutUint16(h[20:], 1) // PCM
	binary.LittleEndian.PutUint16(h[22:], 1) // mono
	binary.LittleEndian.PutUint32(h[24:], SampleRate)
	binary.LittleEndian.PutUint32(h[28:], SampleRate*2)
	binary.LittleEndian.PutUint16(h[32:], 2)
	binary.LittleEndian.PutUint16(h[34:], 16)
	copy(h[36:], "data")
	binary.LittleEndian.PutUint32(h[40:], dataSize)
	_, err := w.Write(h[:])
	return err
}

// PatchSizes rewrites the sizes of a WAV header written by WriteHeader
// (at offset 0 of w) for dataSize bytes of samples.
func PatchSizes(w io.WriterAt, dataSize uint32) error {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], 36+dataSize)
	if _, err := w.WriteAt(b[:], 4); err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(b[:], dataSize)
	_, err := w.WriteAt(b[:], 40)
	return err
}

// ReadHeader reads a WAV header up to the start of its samples and
// returns the size of the data chunk, -1 when the header says
// UnknownSize (or 0: some streaming writers) and the samples run to the
// end of r. Chunks other than fmt and data are skipped. It returns an
// error wrapping ErrWAV for anything but 16-bit PCM mono 8 kHz.
func ReadHeader(r io.Reader) (dataSize int64, err error) {
	var h [12]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, fmt.Errorf("%w: header: %v", ErrWAV, err)
	}
	if string(h[0:4]) != "RIFF" || string(h[8:12]) != "WAVE" {
		return 0, fmt.Errorf("%w: no RIFF/WAVE header", ErrWAV)
	}
	sawFmt := false
	for range 64 {
		var ch [8]byte
		if _, err := io.ReadFull(r, ch[:]); err != nil {
			return 0, fmt.Errorf("%w: chunk header: %v", ErrWAV, err)
		}
		size := binary.LittleEndian.Uint32(ch[4:])
		switch string(ch[0:4]) {
		case "fmt ":
			if size < 16 || size > 1024 {
				return 0, fmt.Errorf("%w: fmt chunk of %d bytes", ErrWAV, size)
			}
			f := make([]byte, size+size&1)
			if _, err := io.ReadFull(r, f); err != nil {
				return 0, fmt.Errorf("%w: fmt chunk: %v", ErrWAV, err)
			}
			tag, chans := binary.LittleEndian.Uint16(f[0:]), binary.LittleEndian.Uint16(f[2:])
			rate, bits := binary.LittleEndian.Uint32(f[4:]), binary.LittleEndian.Uint16(f[14:])
			if tag != 1 && tag != 0xFFFE || chans != 1 || rate != SampleRate || bits != 16 {
				return 0, fmt.Errorf("%w: format %d, %d channels, %d Hz, %d bits", ErrWAV, tag, chans, rate, bits)
			}
			sawFmt = true
		case "data":
			if !sawFmt {
				return 0, fmt.Errorf("%w: data before fmt", ErrWAV)
			}
			if size == UnknownSize || size == 0 {
				return -1, nil
			}
			return int64(size), nil
		default:
			n := int64(size) + int64(size&1)
			if m, err := io.CopyN(io.Discard, r, n); err != nil || m != n {
				return 0, fmt.Errorf("%w: chunk %q: %v", ErrWAV, ch[0:4], err)
			}
		}
	}
	return 0, fmt.Errorf("%w: no data chunk in the first 64", ErrWAV)
}

// ReadPCM reads a whole WAV from r and returns its samples. A data chunk
// cut short by the end of r yields the samples present.
func ReadPCM(r io.Reader) ([]int16, error) {
	size, err := ReadHeader(r)
	if err != nil {
		return nil, err
	}
	if size >= 0 {
		r = io.LimitReader(r, size)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("media: read samples: %w", err)
	}
	return BytesPCM(b), nil
}

// BytesPCM returns the little-endian 16-bit samples of b (an odd last
// byte is dropped).
func BytesPCM(b []byte) []int16 {
	s := make([]int16, len(b)/2)
	for i := range s {
		s[i] = int16(binary.LittleEndian.Uint16(b[2*i:]))
	}
	return s
}

// PCMBytes appends the little-endian bytes of samples s to dst.
func PCMBytes(dst []byte, s []int16) []byte {
	for _, v := range s {
		dst = binary.LittleEndian.AppendUint16(dst, uint16(v))
	}
	return dst
}

// WritePCM writes samples s as a complete WAV.
func WritePCM(w io.Writer, s []int16) error {
	if err := WriteHeader(w, uint32(2*len(s))); err != nil {
		return err
	}
	_, err := w.Write(PCMBytes(nil, s))
	return err
}
