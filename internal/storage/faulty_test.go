package storage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
)

// faultTrace runs a fixed sequence of operations and records which failed.
func faultTrace(t *testing.T, seed int64) string {
	t.Helper()
	ctx := t.Context()
	f := NewFaulty(newTestLocal(t), FaultOptions{Rate: 0.3, Seed: seed})
	var b strings.Builder
	data := bytes.Repeat([]byte("d"), 3<<20)
	for i := range 60 {
		key := fmt.Sprintf("k%d", i%7)
		var err error
		switch i % 5 {
		case 0:
			err = f.Put(ctx, key, bytes.NewReader(data), int64(len(data)), PutOptions{})
		case 1:
			var rc io.ReadCloser
			if rc, err = f.Get(ctx, key, 0, -1); err == nil {
				_, err = io.Copy(io.Discard, rc)
				rc.Close()
			}
		case 2:
			_, err = f.Stat(ctx, key)
		case 3:
			err = f.List(ctx, "", func(ObjectInfo) error { return nil })
		case 4:
			err = f.Delete(ctx, key)
		}
		switch {
		case err == nil:
			b.WriteByte('.')
		case IsTransient(err):
			b.WriteByte('T')
		case errors.Is(err, ErrNotFound):
			b.WriteByte('n')
		default:
			t.Fatalf("op %d: unexpected error %v", i, err)
		}
	}
	return b.String()
}

func TestFaultyIsDeterministicForASeed(t *testing.T) {
	a, b, c := faultTrace(t, 42), faultTrace(t, 42), faultTrace(t, 43)
	if a != b {
		t.Fatalf("same seed, different faults:\n%s\n%s", a, b)
	}
	if a == c {
		t.Fatalf("different seeds, same faults: %s", a)
	}
	if !strings.Contains(a, "T") || !strings.Contains(a, ".") {
		t.Fatalf("rate 0.3 gave %s", a)
	}
}

func TestFaultyRates(t *testing.T) {
	ctx := t.Context()
	f0 := NewFaulty(newTestLocal(t), FaultOptions{Rate: 0, Seed: 1})
	f1 := NewFaulty(newTestLocal(t), FaultOptions{Rate: 1, Seed: 1})
	for i := range 50 {
		key := fmt.Sprintf("k%d", i)
		if err := f0.Put(ctx, key, strings.NewReader("x"), 1, PutOptions{}); err != nil {
			t.Fatalf("rate 0: %v", err)
		}
		if _, err := f1.Stat(ctx, key); !IsTransient(err) {
			t.Fatalf("rate 1: Stat = %v, want a transient fault", err)
		}
	}
	if f0.Injected() != 0 || f1.Injected() != 50 {
		t.Fatalf("injected %d and %d, want 0 and 50", f0.Injected(), f1.Injected())
	}
	if _, ok := any(f1).(StreamDriver); ok {
		t.Fatal("Faulty implements StreamDriver: a Store would bypass its spooling and retries")
	}
}

// TestFaultyPutNeverLeavesAPartialObject: a failed Put leaves no object or,
// for an ambiguous success, the complete one.
func TestFaultyPutNeverLeavesAPartialObject(t *testing.T) {
	ctx := t.Context()
	l := newTestLocal(t)
	f := NewFaulty(l, FaultOptions{Rate: 1, Seed: 3})
	modes := map[string]int{}
	for i := range 60 {
		key := fmt.Sprintf("p%d", i)
		data := bytes.Repeat([]byte{byte(i)}, 1000+i)
		err := f.Put(ctx, key, bytes.NewReader(data), int64(len(data)), PutOptions{})
		if !IsTransient(err) {
			t.Fatalf("rate 1 Put = %v", err)
		}
		rc, gerr := l.Get(ctx, key, 0, -1)
		if errors.Is(gerr, ErrNotFound) {
			modes["nothing"]++
			continue
		}
		if gerr != nil {
			t.Fatal(gerr)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, data) {
			t.Fatalf("Put %d failed and left %d of %d bytes", i, len(got), len(data))
		}
		modes["complete"]++
	}
	if modes["nothing"] == 0 || modes["complete"] == 0 {
		t.Fatalf("fault modes seen: %v, want both failed and ambiguous writes", modes)
	}
	if names := tempFiles(t, l); len(names) > 0 {
		t.Fatalf("temp files left: %v", names)
	}
}

func TestFaultyReadsAndListsBreakMidway(t *testing.T) {
	ctx := t.Context()
	l := newTestLocal(t)
	data := bytes.Repeat([]byte("0123456789"), 200<<10) // 2 MB, past any fault point
	if err := l.Put(ctx, "big", bytes.NewReader(data), int64(len(data)), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := l.Put(ctx, fmt.Sprintf("k%d", i), strings.NewReader("x"), 1, PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	f := NewFaulty(l, FaultOptions{Rate: 1, Seed: 5})
	midRead, midList := 0, 0
	for range 20 {
		rc, err := f.Get(ctx, "big", 0, -1)
		if err != nil {
			if !IsTransient(err) {
				t.Fatal(err)
			}
			continue
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if !IsTransient(err) {
			t.Fatalf("read of a faulty reader ended with %v", err)
		}
		if !bytes.Equal(got, data[:len(got)]) {
			t.Fatal("bytes before the fault are not the object's")
		}
		midRead++
		var seen []string
		err = f.List(ctx, "k", func(o ObjectInfo) error { seen = append(seen, o.Key); return nil })
		if !IsTransient(err) {
			t.Fatalf("List = %v", err)
		}
		if len(seen) > 0 {
			midList++
		}
	}
	if midRead == 0 || midList == 0 {
		t.Fatalf("no mid-stream faults: %d reads, %d lists", midRead, midList)
	}
}

func TestFaultyConcurrentUse(t *testing.T) {
	ctx := t.Context()
	f := NewFaulty(newTestLocal(t), FaultOptions{Rate: 0.5, Seed: 9})
	s := New(f, Options{MaxAttempts: 40, Sleep: (&sleeps{}).sleep, SpoolDir: t.TempDir()})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 25 {
				key := fmt.Sprintf("g%d/%d", g, i)
				want := []byte(key)
				if err := s.Put(ctx, key, want, PutOptions{}); err != nil {
					t.Error(err)
					return
				}
				got, err := s.ReadAll(ctx, key)
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("ReadAll(%s) = %q, %v", key, got, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if f.Injected() == 0 {
		t.Fatal("no faults injected")
	}
}
