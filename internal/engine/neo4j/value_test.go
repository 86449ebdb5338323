package neo4j

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/neo4j/neo4j-go-driver/v5/neo4j/dbtype"
)

// TestValueRoundTrip encodes properties of every type and decodes them back: the
// decoded values are what the driver sends to Neo4j, so they must encode the same.
func TestValueRoundTrip(t *testing.T) {
	for i := 0; i < 40; i++ {
		props := allTypes(i * 37)
		props["empty"] = []any{}
		props["bigYear"] = dbtype.Date(time.Date(-4000, 1, 1, 0, 0, 0, 0, time.UTC))
		props["farFuture"] = time.Date(12000, 6, 1, 0, 0, 0, 1, time.FixedZone(offsetZone, 50400))
		props["utc"] = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		props["points"] = []any{dbtype.Point2D{SpatialRefId: 7203, X: 1e-300, Y: math.MaxFloat64}}
		enc, err := canonical(props)
		if err != nil {
			t.Fatal(err)
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(enc, &raw); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, enc)
		}
		back, err := decodeProps(raw)
		if err != nil {
			t.Fatalf("decode: %v\n%s", err, enc)
		}
		again, err := canonical(back)
		if err != nil {
			t.Fatal(err)
		}
		if string(again) != string(enc) {
			t.Fatalf("round trip changed the values:\n%s\n%s", enc, again)
		}
	}
}

func TestValueDecodedTypes(t *testing.T) {
	props := allTypes(3)
	enc, _ := canonical(props)
	var raw map[string]json.RawMessage
	_ = json.Unmarshal(enc, &raw)
	back, err := decodeProps(raw)
	if err != nil {
		t.Fatal(err)
	}
	at := back["at"].(time.Time)
	if at.Location().String() != "Europe/Berlin" || !at.Equal(props["at"].(time.Time)) {
		t.Errorf("datetime with zone id: %v in %s", at, at.Location())
	}
	off := back["atOffset"].(time.Time)
	if name, secs := off.Zone(); name != offsetZone || secs != -(5*3600+30*60) || !off.Equal(props["atOffset"].(time.Time)) {
		t.Errorf("datetime with offset: %v (%s %d)", off, name, secs)
	}
	if tm := time.Time(back["clockTz"].(dbtype.Time)); tm.Hour() != 8 || tm.Second() != 3 || tm.Nanosecond() != 5 {
		t.Errorf("time: %v", tm)
	}
	if ldt := time.Time(back["local"].(dbtype.LocalDateTime)); ldt.Location() != time.UTC || ldt.Hour() != 2 || ldt.Year() != 1970 {
		t.Errorf("local datetime: %v", ldt)
	}
	if p := back["xyz"].(dbtype.Point3D); p.SpatialRefId != 9157 || p.Z != -3 {
		t.Errorf("point: %+v", p)
	}
	if b := back["blob"].([]byte); len(b) != 5 || b[3] != 3 {
		t.Errorf("bytes: %v", b)
	}
	if l := back["counts"].([]any); l[2].(int64) != math.MaxInt64 || l[3].(int64) != math.MinInt64 {
		t.Errorf("integers: %v", l)
	}
	if r := back["ratios"].([]any); !math.IsInf(r[1].(float64), 1) || !math.Signbit(r[2].(float64)) {
		t.Errorf("floats: %v", r)
	}
	if s := back["name"].(string); s != props["name"] {
		t.Errorf("string: %q", s)
	}
}

func TestValueErrors(t *testing.T) {
	var e encoder
	for _, v := range []any{nil, map[string]any{"a": int64(1)}, int32(1), &dbtype.InvalidValue{Message: "zone", Err: errInvalid}} {
		if _, err := e.appendValue(nil, v); err == nil {
			t.Errorf("%T: encoded, want an error", v)
		}
	}
	for _, raw := range []string{`1`, `["int"]`, `["int","x"]`, `["float",1]`, `["nosuch",1]`, `["point",1,"a","b"]`,
		`["datetime",1,2,"No/Such_Zone"]`, `["list",[["int",1],["bool"]]]`, `["bytes","!!"]`, `["date",1,2]`} {
		if v, err := decodeValue(json.RawMessage(raw)); err == nil {
			t.Errorf("%s decoded to %v, want an error", raw, v)
		}
	}
}

var errInvalid = &json.UnsupportedValueError{Str: "bad"}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", "quote\" back\\slash", "ctl\x00\x01\x1f\t\n\r", "ünï ✓ 𝄞", "bad\xffutf8", "</script>&"} {
		enc := appendString(nil, s)
		var back string
		if err := json.Unmarshal(enc, &back); err != nil {
			t.Fatalf("%q -> %s: %v", s, enc, err)
		}
		want := strings.ToValidUTF8(s, "\ufffd")
		if back != want {
			t.Errorf("%q -> %s -> %q", s, enc, back)
		}
	}
}

// TestSuspectLocalDateTime: local date-times just after a spring-forward change of
// the zone they were built in are flagged.
func TestSuspectLocalDateTime(t *testing.T) {
	// 2024-03-31 02:30 does not exist in Berlin; time.Date moves it to 03:30 CEST.
	moved := time.Date(2024, 3, 31, 2, 30, 0, 0, berlin)
	if !suspectLocalDateTime(moved) {
		t.Errorf("%v: not flagged", moved)
	}
	for _, ok := range []time.Time{time.Date(2024, 3, 31, 5, 0, 0, 0, berlin), time.Date(2024, 10, 27, 2, 30, 0, 0, berlin), time.Date(2024, 3, 31, 2, 30, 0, 0, time.UTC)} {
		if suspectLocalDateTime(ok) {
			t.Errorf("%v: flagged", ok)
		}
	}
}
