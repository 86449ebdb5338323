// Package chain plans SQL Server restores from backup history, as dbatools does: which
// full, which differential and which log backups, in LSN order, bring a database to a
// point in time; and it validates a history (gaps in the log chain, recovery forks).
// It is pure: records in, plan or named problems out.
package chain

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
)

// LSN is a log sequence number as msdb stores it: numeric(25,0). The zero value is an
// absent LSN (NULL in msdb), distinct from the number 0. LSNs are compared as exact
// integers; they do not fit in 64 bits.
type LSN struct {
	digits string // canonical decimal: no sign, no leading zeros ("0" for zero)
}

// MaxLSNDigits is the precision of msdb's numeric(25,0).
const MaxLSNDigits = 25

// ParseLSN reads a decimal LSN. "" is the absent LSN.
func ParseLSN(s string) (LSN, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return LSN{}, nil
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return LSN{}, fmt.Errorf("LSN %q is not a non-negative decimal integer", s)
		}
	}
	t := strings.TrimLeft(s, "0")
	if t == "" {
		t = "0"
	}
	if len(t) > MaxLSNDigits {
		return LSN{}, fmt.Errorf("LSN %q has more than %d digits", s, MaxLSNDigits)
	}
	return LSN{digits: t}, nil
}

// MustLSN is ParseLSN for constants; it panics on a bad LSN.
func MustLSN(s string) LSN {
	l, err := ParseLSN(s)
	if err != nil {
		panic(err)
	}
	return l
}

// LSNFromBig converts a non-negative big integer.
func LSNFromBig(b *big.Int) (LSN, error) {
	if b == nil {
		return LSN{}, nil
	}
	if b.Sign() < 0 {
		return LSN{}, fmt.Errorf("LSN %s is negative", b)
	}
	return ParseLSN(b.String())
}

// IsZero reports whether the LSN is absent.
func (l LSN) IsZero() bool { return l.digits == "" }

// String is the decimal form ("" when absent).
func (l LSN) String() string { return l.digits }

// Big returns the LSN as a big integer (nil when absent).
func (l LSN) Big() *big.Int {
	if l.IsZero() {
		return nil
	}
	b, _ := new(big.Int).SetString(l.digits, 10)
	return b
}

// Cmp compares two LSNs: -1, 0 or +1. An absent LSN sorts before every number.
func (l LSN) Cmp(o LSN) int {
	switch {
	case l.digits == o.digits:
		return 0
	case l.IsZero():
		return -1
	case o.IsZero():
		return 1
	case len(l.digits) != len(o.digits):
		if len(l.digits) < len(o.digits) {
			return -1
		}
		return 1
	case l.digits < o.digits:
		return -1
	}
	return 1
}

// Parts splits the LSN into the virtual log file number, the log block and the slot,
// as SQL Server prints them (34:1234:1): the decimal form is vlf*10^15 + block*10^5 + slot.
func (l LSN) Parts() (vlf, block, slot string) {
	d := fmt.Sprintf("%016s", l.digits)
	n := len(d)
	vlf = strings.TrimLeft(d[:n-15], "0")
	block = strings.TrimLeft(d[n-15:n-5], "0")
	slot = strings.TrimLeft(d[n-5:], "0")
	if vlf == "" {
		vlf = "0"
	}
	if block == "" {
		block = "0"
	}
	if slot == "" {
		slot = "0"
	}
	return vlf, block, slot
}

// Describe is the LSN for messages: decimal and VLF:block:slot.
func (l LSN) Describe() string {
	if l.IsZero() {
		return "(none)"
	}
	v, b, s := l.Parts()
	return fmt.Sprintf("%s (%s:%s:%s)", l.digits, v, b, s)
}

// MarshalJSON writes the LSN as a JSON string (null when absent): JSON numbers lose
// precision past 2^53 in most readers.
func (l LSN) MarshalJSON() ([]byte, error) {
	if l.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(l.digits)
}

// UnmarshalJSON reads a string, a number or null.
func (l *LSN) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "null" {
		*l = LSN{}
		return nil
	}
	if strings.HasPrefix(s, `"`) {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	p, err := ParseLSN(s)
	if err != nil {
		return err
	}
	*l = p
	return nil
}
