package sipvm

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/icholy/digest"
)

// parseCredentials parses a Digest Authorization value (RFC 7616 §3.4,
// RFC 3261 §25.1): the scheme, then comma-separated name=value pairs whose
// values are tokens or quoted strings; names are matched without regard to
// case and unknown ones are skipped. It fills icholy/digest's Credentials,
// as that package's ParseCredentials does, but reads the string in place:
// that one reads a byte (or rune) at a time through a bufio.Reader, which
// took 6 % of a peer's CPU under the REGISTER benchmark.
func parseCredentials(s string) (*digest.Credentials, error) {
	scheme, rest, _ := strings.Cut(strings.TrimLeft(s, " \t"), " ")
	if !strings.EqualFold(scheme, "Digest") {
		return nil, errors.New("not Digest credentials")
	}
	var c digest.Credentials
	for {
		rest = strings.TrimLeft(rest, " \t")
		if rest == "" {
			return &c, nil
		}
		i := 0
		for i < len(rest) && isToken(rest[i]) {
			i++
		}
		if i == 0 {
			return nil, fmt.Errorf("expected a parameter name at %q", clip(rest))
		}
		name := rest[:i]
		rest = strings.TrimLeft(rest[i:], " \t")
		if rest == "" || rest[0] != '=' {
			return nil, fmt.Errorf("parameter %q has no value", name)
		}
		rest = strings.TrimLeft(rest[1:], " \t")
		var val string
		if rest != "" && rest[0] == '"' {
			v, n, err := unquote(rest)
			if err != nil {
				return nil, fmt.Errorf("parameter %q: %w", name, err)
			}
			val, rest = v, rest[n:]
		} else {
			j := strings.IndexAny(rest, ", \t")
			if j < 0 {
				j = len(rest)
			}
			if j == 0 {
				return nil, fmt.Errorf("parameter %q has an empty value", name)
			}
			val, rest = rest[:j], rest[j:]
		}
		if err := setCredential(&c, name, val); err != nil {
			return nil, err
		}
		rest = strings.TrimLeft(rest, " \t")
		if rest == "" {
			return &c, nil
		}
		if rest[0] != ',' {
			return nil, fmt.Errorf("expected a comma after parameter %q, got %q", name, clip(rest))
		}
		rest = rest[1:]
	}
}

// unquote reads the quoted string at the start of s and returns its value
// and how many bytes of s it took.
func unquote(s string) (string, int, error) {
	var b []byte // only when there are escapes
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '"':
			if b != nil {
				return string(b), i + 1, nil
			}
			return s[1:i], i + 1, nil
		case '\\':
			if i+1 == len(s) {
				return "", 0, errors.New("unterminated quoted string")
			}
			if b == nil {
				b = []byte(s[1:i])
			}
			i++
			b = append(b, s[i])
		default:
			if b != nil {
				b = append(b, s[i])
			}
		}
	}
	return "", 0, errors.New("unterminated quoted string")
}

func setCredential(c *digest.Credentials, name, val string) error {
	switch strings.ToLower(name) {
	case "username":
		c.Username = val
	case "realm":
		c.Realm = val
	case "nonce":
		c.Nonce = val
	case "uri":
		c.URI = val
	case "response":
		c.Response = val
	case "algorithm":
		c.Algorithm = val
	case "cnonce":
		c.Cnonce = val
	case "opaque":
		c.Opaque = val
	case "qop":
		c.QOP = val
	case "nc":
		nc, err := strconv.ParseInt(val, 16, 32)
		if err != nil {
			return fmt.Errorf("nonce count %q is not 8 hex digits", val)
		}
		c.Nc = int(nc)
	case "userhash":
		c.Userhash = strings.EqualFold(val, "true")
	}
	return nil
}

// isToken reports whether b may appear in a token (RFC 7230 tchar).
func isToken(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

func clip(s string) string {
	if len(s) > 20 {
		return s[:20] + "…"
	}
	return s
}
