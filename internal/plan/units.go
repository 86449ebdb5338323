package plan

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
)

const (
	day  = 24 * time.Hour
	week = 7 * day
)

const durationHint = "want e.g. 30s, 90m, 26h, 7d, 4w or 1h30m"

// ParseDuration parses a positive time span. It accepts Go's units (ns, us, ms, s, m, h)
// plus d (24h) and w (7d), in any combination: 30s, 90m, 26h, 7d, 4w, 1h30m, 1d12h.
// Days and weeks must be whole numbers; Go's units may have fractions (1.5h).
func ParseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("empty duration (" + durationHint + ")")
	}
	bad := func() error { return fmt.Errorf("invalid duration %q (%s)", s, durationHint) }
	if s[0] == '-' || s[0] == '+' {
		if s[0] == '-' {
			return 0, fmt.Errorf("duration %q must be greater than zero", s)
		}
		return 0, bad()
	}
	var total time.Duration
	for rest := s; rest != ""; {
		i := 0
		for i < len(rest) && (isDigit(rest[i]) || rest[i] == '.') {
			i++
		}
		j := i
		for j < len(rest) && !isDigit(rest[j]) && rest[j] != '.' {
			j++
		}
		num, unit := rest[:i], rest[i:j]
		rest = rest[j:]
		if num == "" {
			return 0, bad()
		}
		var d time.Duration
		switch unit {
		case "":
			return 0, fmt.Errorf("missing unit in duration %q (%s)", s, durationHint)
		case "d", "w":
			n, err := strconv.ParseInt(num, 10, 64)
			if err != nil {
				return 0, bad()
			}
			mult := day
			if unit == "w" {
				mult = week
			}
			if n > int64(math.MaxInt64/mult) {
				return 0, fmt.Errorf("duration %q is too long", s)
			}
			d = time.Duration(n) * mult
		default:
			var err error
			// Go's parser does the fractional arithmetic for its own units.
			if d, err = time.ParseDuration(num + unit); err != nil {
				return 0, bad()
			}
		}
		if total > math.MaxInt64-d {
			return 0, fmt.Errorf("duration %q is too long", s)
		}
		total += d
	}
	if total <= 0 {
		return 0, fmt.Errorf("duration %q must be greater than zero", s)
	}
	return total, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d so that ParseDuration reads it back: 7d, 4w, 1d12h, 1h30m, 90s.
func (d Duration) String() string {
	v := time.Duration(d)
	if v <= 0 {
		return v.String()
	}
	days, rest := v/day, v%day
	var b strings.Builder
	switch {
	case days > 0 && rest == 0 && days%7 == 0:
		return strconv.FormatInt(int64(days/7), 10) + "w"
	case days > 0:
		b.WriteString(strconv.FormatInt(int64(days), 10) + "d")
	}
	if rest > 0 {
		s := rest.String()
		// time.Duration prints 12h0m0s; the zero tails are noise in a plan file.
		if strings.HasSuffix(s, "m0s") {
			s = strings.TrimSuffix(s, "0s")
		}
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
		b.WriteString(s)
	}
	return b.String()
}

// UnmarshalYAML reads a duration string such as 7d.
func (d *Duration) UnmarshalYAML(unmarshal func(any) error) error {
	var v any
	if err := unmarshal(&v); err != nil {
		return err
	}
	var s string
	switch v := v.(type) {
	case string:
		s = v
	case uint64, int64, float64:
		s = fmt.Sprint(v) // reported as a missing unit
	default:
		return errors.New("expected a duration such as 7d")
	}
	p, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(p)
	return nil
}

// MarshalYAML writes d in the form UnmarshalYAML reads.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

const sizeHint = "want e.g. 256MiB, 1GiB, 1GB or a number of bytes"

// sizeUnit returns the multiplier of a lower-cased size unit.
func sizeUnit(u string) (int64, bool) {
	switch u {
	case "", "b":
		return 1, true
	case "kb":
		return 1e3, true
	case "mb":
		return 1e6, true
	case "gb":
		return 1e9, true
	case "tb":
		return 1e12, true
	case "kib":
		return 1 << 10, true
	case "mib":
		return 1 << 20, true
	case "gib":
		return 1 << 30, true
	case "tib":
		return 1 << 40, true
	}
	return 0, false
}

// ParseSize parses a byte count: a plain integer, or a number with a unit B, KB, MB, GB,
// TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), case-insensitive, with an
// optional space between number and unit. A fraction is allowed when the result is a
// whole number of bytes (1.5GiB).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (isDigit(t[i]) || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	mult, ok := sizeUnit(strings.ToLower(unit))
	if num == "" || !ok {
		return 0, fmt.Errorf("invalid size %q (%s)", s, sizeHint)
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("invalid size %q (%s)", s, sizeHint)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return 0, fmt.Errorf("size %q is not a whole number of bytes", s)
	}
	if !r.Num().IsInt64() {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return r.Num().Int64(), nil
}

// String formats s with the largest unit that divides it exactly: 256MiB, 1GB, 1000B.
func (s Size) String() string {
	v := int64(s)
	if v > 0 {
		for _, u := range [...]struct {
			name string
			mult int64
		}{{"TiB", 1 << 40}, {"TB", 1e12}, {"GiB", 1 << 30}, {"GB", 1e9}, {"MiB", 1 << 20}, {"MB", 1e6}, {"KiB", 1 << 10}, {"KB", 1e3}} {
			if v%u.mult == 0 {
				return strconv.FormatInt(v/u.mult, 10) + u.name
			}
		}
	}
	return strconv.FormatInt(v, 10) + "B"
}

// UnmarshalYAML reads a size written as a YAML integer or a string with a unit.
func (s *Size) UnmarshalYAML(unmarshal func(any) error) error {
	var v any
	if err := unmarshal(&v); err != nil {
		return err
	}
	var n int64
	switch v := v.(type) {
	case uint64:
		if v > math.MaxInt64 {
			return fmt.Errorf("size %d is too large", v)
		}
		n = int64(v)
	case int64:
		if v < 0 {
			return fmt.Errorf("invalid size %d (%s)", v, sizeHint)
		}
		n = v
	case string:
		p, err := ParseSize(v)
		if err != nil {
			return err
		}
		n = p
	default:
		return errors.New("expected a size such as 256MiB")
	}
	*s = Size(n)
	return nil
}

// MarshalYAML writes s in the form UnmarshalYAML reads.
func (s Size) MarshalYAML() (any, error) { return s.String(), nil }
