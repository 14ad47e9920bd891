package media

// G.711 (ITU-T G.711, 1988), after the public-domain Sun reference code:
// μ-law (PCMU, payload type 0) and A-law (PCMA, payload type 8), one byte
// per 8 kHz sample.

const (
	ulawBias = 0x84
	ulawClip = 32635
)

// ULawEncode returns the μ-law byte of a 16-bit linear sample.
func ULawEncode(s int16) byte {
	v, sign := int(s), 0
	if v < 0 {
		v, sign = -v, 0x80
	}
	if v > ulawClip {
		v = ulawClip
	}
	v += ulawBias
	exp := 7
	for mask := 0x4000; v&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := (v >> (exp + 3)) & 0x0F
	return ^byte(sign | exp<<4 | mant)
}

// ULawDecode returns the 16-bit linear sample of a μ-law byte.
func ULawDecode(u byte) int16 {
	u = ^u
	exp := int(u>>4) & 7
	v := ((int(u&0x0F) << 3) + ulawBias) << exp
	v -= ulawBias
	if u&0x80 != 0 {
		return int16(-v)
	}
	return int16(v)
}

var alawSegEnd = [8]int{0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF}

// ALawEncode returns the A-law byte of a 16-bit linear sample.
func ALawEncode(s int16) byte {
	v := int(s) >> 3
	mask := 0xD5
	if v < 0 {
		mask, v = 0x55, -v-1
	}
	seg := 0
	for seg < 8 && v > alawSegEnd[seg] {
		seg++
	}
	if seg >= 8 {
		return byte(0x7F ^ mask)
	}
	a := seg << 4
	if seg < 2 {
		a |= (v >> 1) & 0x0F
	} else {
		a |= (v >> seg) & 0x0F
	}
	return byte(a ^ mask)
}

// ALawDecode returns the 16-bit linear sample of an A-law byte.
func ALawDecode(a byte) int16 {
	a ^= 0x55
	t := int(a&0x0F) << 4
	switch seg := int(a&0x70) >> 4; seg {
	case 0:
		t += 8
	case 1:
		t += 0x108
	default:
		t += 0x108
		t <<= seg - 1
	}
	if a&0x80 != 0 {
		return int16(t)
	}
	return int16(-t)
}

// Encode appends the G.711 bytes of pcm in codec c to dst.
func (c Codec) Encode(dst []byte, pcm []int16) []byte {
	enc := ULawEncode
	if c.PayloadType == PCMA.PayloadType {
		enc = ALawEncode
	}
	for _, s := range pcm {
		dst = append(dst, enc(s))
	}
	return dst
}

// Decode appends the samples of the G.711 payload b in codec c to dst.
func (c Codec) Decode(dst []int16, b []byte) []int16 {
	dec := ULawDecode
	if c.PayloadType == PCMA.PayloadType {
		dec = ALawDecode
	}
	for _, x := range b {
		dst = append(dst, dec(x))
	}
	return dst
}
