package neo4j

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/neo4j/neo4j-go-driver/v5/neo4j/dbtype"
)

// Property values are written as JSON arrays whose first element names the Neo4j type;
// the rest are exact, range-safe numbers or strings (see docs/neo4j.md):
//
//	["bool", true]                       ["int", 42]
//	["float", "0.1"]                     (a string: NaN and ±Inf survive)
//	["string", "text"]                   ["bytes", "<base64>"]
//	["date", DAYS]                       (days since 1970-01-01)
//	["time", NANOS_OF_DAY, OFFSET_S]     ["localtime", NANOS_OF_DAY]
//	["datetime", UNIX_S, NANOS, OFFSET_S]  or  ["datetime", UNIX_S, NANOS, "Europe/Berlin"]
//	["localdatetime", S, NANOS]          (the wall clock read as UTC)
//	["duration", MONTHS, DAYS, S, NANOS]
//	["point", SRID, "x", "y"]  or  ["point", SRID, "x", "y", "z"]
//	["list", [V, V, ...]]                (each element typed as above)
const (
	tBool          = "bool"
	tInt           = "int"
	tFloat         = "float"
	tString        = "string"
	tBytes         = "bytes"
	tDate          = "date"
	tTime          = "time"
	tLocalTime     = "localtime"
	tDateTime      = "datetime"
	tLocalDateTime = "localdatetime"
	tDuration      = "duration"
	tPoint         = "point"
	tList          = "list"
)

// offsetZone is the name the Go driver gives fixed offsets; a time.Time in a location
// of this name goes back to Neo4j as a datetime with an offset, any other name as a
// datetime with that zone id.
const offsetZone = "Offset"

// encoder appends typed values; it counts values that need a warning.
type encoder struct {
	// suspectLocal counts local date-times that may have been shifted by the driver,
	// which builds them in this process's time zone (see suspectLocalDateTime).
	suspectLocal int64
}

// appendProps appends a JSON object of typed values, keys sorted.
func (e *encoder) appendProps(b []byte, props map[string]any) ([]byte, error) {
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		var err error
		if b, err = e.appendValue(b, props[k]); err != nil {
			return nil, fmt.Errorf("property %q: %w", k, err)
		}
	}
	return append(b, '}'), nil
}

func (e *encoder) appendValue(b []byte, v any) ([]byte, error) {
	tag := func(t string) []byte {
		b = append(b, `["`...)
		b = append(b, t...)
		return append(b, `",`...)
	}
	switch x := v.(type) {
	case bool:
		b = tag(tBool)
		b = strconv.AppendBool(b, x)
	case int64:
		b = tag(tInt)
		b = strconv.AppendInt(b, x, 10)
	case float64:
		b = tag(tFloat)
		b = append(b, '"')
		b = strconv.AppendFloat(b, x, 'g', -1, 64)
		b = append(b, '"')
	case string:
		b = tag(tString)
		b = appendString(b, x)
	case []byte:
		b = tag(tBytes)
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, x)
		b = append(b, '"')
	case dbtype.Date:
		t := time.Time(x)
		b = tag(tDate)
		days := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC).Unix() / 86400
		b = strconv.AppendInt(b, days, 10)
	case dbtype.Time:
		t := time.Time(x)
		_, off := t.Zone()
		b = tag(tTime)
		b = strconv.AppendInt(b, nanosOfDay(t), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(off), 10)
	case dbtype.LocalTime:
		b = tag(tLocalTime)
		b = strconv.AppendInt(b, nanosOfDay(time.Time(x)), 10)
	case time.Time:
		b = tag(tDateTime)
		b = strconv.AppendInt(b, x.Unix(), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(x.Nanosecond()), 10)
		b = append(b, ',')
		if name, off := x.Zone(); x.Location().String() == offsetZone || name == offsetZone {
			b = strconv.AppendInt(b, int64(off), 10)
		} else {
			b = appendString(b, x.Location().String())
		}
	case dbtype.LocalDateTime:
		t := time.Time(x)
		if suspectLocalDateTime(t) {
			e.suspectLocal++
		}
		wall := time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
		b = tag(tLocalDateTime)
		b = strconv.AppendInt(b, wall.Unix(), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(wall.Nanosecond()), 10)
	case dbtype.Duration:
		b = tag(tDuration)
		for i, n := range []int64{x.Months, x.Days, x.Seconds, int64(x.Nanos)} {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, n, 10)
		}
	case dbtype.Point2D:
		b = tag(tPoint)
		b = strconv.AppendUint(b, uint64(x.SpatialRefId), 10)
		b = appendFloats(b, x.X, x.Y)
	case dbtype.Point3D:
		b = tag(tPoint)
		b = strconv.AppendUint(b, uint64(x.SpatialRefId), 10)
		b = appendFloats(b, x.X, x.Y, x.Z)
	case []any:
		b = tag(tList)
		b = append(b, '[')
		for i, el := range x {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = e.appendValue(b, el); err != nil {
				return nil, fmt.Errorf("list element %d: %w", i, err)
			}
		}
		b = append(b, ']')
	case *dbtype.InvalidValue:
		return nil, fmt.Errorf("the driver could not read the value: %s: %w", x.Message, x.Err)
	case nil:
		return nil, errors.New("null is not a property value")
	default:
		return nil, fmt.Errorf("unsupported value of Go type %T", v)
	}
	return append(b, ']'), nil
}

func appendFloats(b []byte, fs ...float64) []byte {
	for _, f := range fs {
		b = append(b, `,"`...)
		b = strconv.AppendFloat(b, f, 'g', -1, 64)
		b = append(b, '"')
	}
	return b
}

func nanosOfDay(t time.Time) int64 {
	return int64(t.Hour())*int64(time.Hour) + int64(t.Minute())*int64(time.Minute) +
		int64(t.Second())*int64(time.Second) + int64(t.Nanosecond())
}

// suspectLocalDateTime reports whether t, a local date-time the Go driver built in this
// process's time zone, falls just after a forward daylight-saving change: a wall clock
// inside the skipped hour would have been moved there by time.Date. Such values may be
// off by the size of the change (never on a host whose zone is UTC or has no DST).
func suspectLocalDateTime(t time.Time) bool {
	start, _ := t.ZoneBounds()
	if start.IsZero() {
		return false
	}
	_, offNow := t.Zone()
	_, offBefore := start.Add(-time.Nanosecond).Zone()
	gap := time.Duration(offNow-offBefore) * time.Second
	return gap > 0 && t.Sub(start) < gap
}

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as in
// encoding/json.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// decodeProps reads a JSON object of typed values into driver values.
func decodeProps(raw map[string]json.RawMessage) (map[string]any, error) {
	out := make(map[string]any, len(raw))
	for k, r := range raw {
		v, err := decodeValue(r)
		if err != nil {
			return nil, fmt.Errorf("property %q: %w", k, err)
		}
		out[k] = v
	}
	return out, nil
}

// decodeValue reads one typed value (see the table at the top of this file).
func decodeValue(raw json.RawMessage) (any, error) {
	var parts []json.RawMessage
	if err := json.Unmarshal(raw, &parts); err != nil || len(parts) < 2 {
		return nil, fmt.Errorf("not a typed value: %.60s", raw)
	}
	var tag string
	if err := json.Unmarshal(parts[0], &tag); err != nil {
		return nil, fmt.Errorf("not a typed value: %.60s", raw)
	}
	args := parts[1:]
	want := func(n ...int) error {
		for _, m := range n {
			if len(args) == m {
				return nil
			}
		}
		return fmt.Errorf("%s value with %d fields: %.60s", tag, len(args), raw)
	}
	var firstErr error
	// ints parses args[from:to] as integers.
	ints := func(from, to int) []int64 {
		out := make([]int64, 0, to-from)
		for _, a := range args[from:to] {
			n, err := strconv.ParseInt(string(a), 10, 64)
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("%s value: %s is not an integer", tag, a)
			}
			out = append(out, n)
		}
		return out
	}
	floats := func(from int) []float64 {
		out := make([]float64, 0, len(args)-from)
		for _, a := range args[from:] {
			var s string
			if err := json.Unmarshal(a, &s); err != nil && firstErr == nil {
				firstErr = fmt.Errorf("%s value: %s is not a number string", tag, a)
			}
			f, err := strconv.ParseFloat(s, 64)
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("%s value: %q is not a number", tag, s)
			}
			out = append(out, f)
		}
		return out
	}
	var v any
	switch tag {
	case tBool:
		if err := want(1); err != nil {
			return nil, err
		}
		var x bool
		if err := json.Unmarshal(args[0], &x); err != nil {
			return nil, fmt.Errorf("bool value: %w", err)
		}
		v = x
	case tInt:
		if err := want(1); err != nil {
			return nil, err
		}
		v = ints(0, 1)[0]
	case tFloat:
		if err := want(1); err != nil {
			return nil, err
		}
		v = floats(0)[0]
	case tString:
		if err := want(1); err != nil {
			return nil, err
		}
		var s string
		if err := json.Unmarshal(args[0], &s); err != nil {
			return nil, fmt.Errorf("string value: %w", err)
		}
		v = s
	case tBytes:
		if err := want(1); err != nil {
			return nil, err
		}
		var s string
		if err := json.Unmarshal(args[0], &s); err != nil {
			return nil, fmt.Errorf("bytes value: %w", err)
		}
		bs, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("bytes value: %w", err)
		}
		v = bs
	case tDate:
		if err := want(1); err != nil {
			return nil, err
		}
		days := ints(0, 1)[0]
		v = dbtype.Date(time.Unix(days*86400, 0).UTC())
	case tTime:
		if err := want(2); err != nil {
			return nil, err
		}
		n := ints(0, 2)
		v = dbtype.Time(time.Date(0, 1, 1, 0, 0, 0, 0, time.FixedZone(offsetZone, int(n[1]))).Add(time.Duration(n[0])))
	case tLocalTime:
		if err := want(1); err != nil {
			return nil, err
		}
		v = dbtype.LocalTime(time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(ints(0, 1)[0])))
	case tDateTime:
		if err := want(3); err != nil {
			return nil, err
		}
		n := ints(0, 2)
		t := time.Unix(n[0], n[1])
		var zone string
		if json.Unmarshal(args[2], &zone) == nil {
			loc, err := time.LoadLocation(zone)
			if err != nil {
				return nil, fmt.Errorf("datetime value: time zone %q: %w", zone, err)
			}
			t = t.In(loc)
		} else {
			t = t.In(time.FixedZone(offsetZone, int(ints(2, 3)[0])))
		}
		v = t
	case tLocalDateTime:
		if err := want(2); err != nil {
			return nil, err
		}
		n := ints(0, 2)
		// In UTC: the driver sends the wall clock plus the location's offset (0 here).
		v = dbtype.LocalDateTime(time.Unix(n[0], n[1]).UTC())
	case tDuration:
		if err := want(4); err != nil {
			return nil, err
		}
		n := ints(0, 4)
		v = dbtype.Duration{Months: n[0], Days: n[1], Seconds: n[2], Nanos: int(n[3])}
	case tPoint:
		if err := want(3, 4); err != nil {
			return nil, err
		}
		srid := ints(0, 1)[0]
		if srid < 0 || srid > math.MaxUint32 {
			return nil, fmt.Errorf("point value: SRID %d out of range", srid)
		}
		f := floats(1)
		if len(f) == 2 {
			v = dbtype.Point2D{SpatialRefId: uint32(srid), X: f[0], Y: f[1]}
		} else {
			v = dbtype.Point3D{SpatialRefId: uint32(srid), X: f[0], Y: f[1], Z: f[2]}
		}
	case tList:
		if err := want(1); err != nil {
			return nil, err
		}
		var elems []json.RawMessage
		if err := json.Unmarshal(args[0], &elems); err != nil {
			return nil, fmt.Errorf("list value: %w", err)
		}
		list := make([]any, len(elems))
		for i, el := range elems {
			x, err := decodeValue(el)
			if err != nil {
				return nil, fmt.Errorf("list element %d: %w", i, err)
			}
			list[i] = x
		}
		v = list
	default:
		return nil, fmt.Errorf("unknown value type %q", tag)
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return v, nil
}

// canonical returns the typed encoding of a property map, keys sorted: equal graphs
// give equal bytes. Used by tests and verification to compare values exactly.
func canonical(props map[string]any) ([]byte, error) {
	var e encoder
	return e.appendProps(nil, props)
}

// compactJSON is json.Compact into a new slice (for messages and tests).
func compactJSON(raw []byte) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}
