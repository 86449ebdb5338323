package storage_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/hartonomous/hartvault/internal/storage"
	"github.com/hartonomous/hartvault/internal/testutil/azurite"
)

// TestAzurite covers what the backend suite cannot: tiers, containers,
// credentials and URL options. One emulator serves all subtests.
func TestAzurite(t *testing.T) {
	srv := azurite.Start(t)
	srv.Setenv(t)

	t.Run("Tiers", func(t *testing.T) {
		ctx := t.Context()
		s, err := storage.Open(ctx, srv.Container(t, "tiers"), storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for _, tier := range []string{"hot", "cool", "cold", "archive"} {
			if err := s.Put(ctx, "t/"+tier, []byte(tier), storage.PutOptions{Tier: tier}); err != nil {
				t.Fatalf("Put with tier %s: %v", tier, err)
			}
			info, err := s.Stat(ctx, "t/"+tier)
			if err != nil {
				t.Fatal(err)
			}
			if info.Tier != tier {
				t.Errorf("Stat: tier %q, want %q", info.Tier, tier)
			}
		}
		if err := s.List(ctx, "t/", func(o storage.ObjectInfo) error {
			if want := strings.TrimPrefix(o.Key, "t/"); o.Tier != want {
				t.Errorf("List: %s has tier %q, want %q", o.Key, o.Tier, want)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, "t/bogus", []byte("x"), storage.PutOptions{Tier: "bogus"}); err == nil {
			t.Error("Put with an unknown tier succeeded")
		}
	})

	t.Run("MissingContainer", func(t *testing.T) {
		ctx := t.Context()
		s, err := storage.Open(ctx, "azblob://not-created-yet", storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		_, err = s.Stat(ctx, "k")
		if err == nil || errors.Is(err, storage.ErrNotFound) || storage.IsTransient(err) || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("Stat in a missing container = %v, want a plain 'container does not exist' error", err)
		}
		if err := s.Put(ctx, "k", []byte("v"), storage.PutOptions{}); err == nil {
			t.Fatal("Put into a missing container succeeded")
		}
		if err := s.Create(ctx); err != nil {
			t.Fatalf("Create: %v", err)
		}
		if err := s.Create(ctx); err != nil {
			t.Fatalf("Create of an existing container: %v", err)
		}
		if err := s.Put(ctx, "k", []byte("v"), storage.PutOptions{}); err != nil {
			t.Fatalf("Put after Create: %v", err)
		}
	})

	t.Run("PrefixURL", func(t *testing.T) {
		ctx := t.Context()
		base := srv.Container(t, "prefix")
		s, err := storage.Open(ctx, base+"?prefix=sub/", storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if got := s.String(); !strings.Contains(got, "prefix=sub") {
			t.Errorf("String() = %q, want the prefix shown", got)
		}
		if err := s.Put(ctx, "k", []byte("v"), storage.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		raw, err := storage.Open(ctx, base, storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		if _, err := raw.Stat(ctx, "sub/k"); err != nil {
			t.Fatalf("object not under the prefix: %v", err)
		}
	})

	t.Run("BadCredentials", func(t *testing.T) {
		ctx := t.Context()
		url := srv.Container(t, "creds")
		good := srv.ConnectionString()
		t.Setenv("AZURE_STORAGE_CONNECTION_STRING", strings.Replace(good, azurite.Key, "d3Jvbmcga2V5IHdyb25nIGtleSB3cm9uZyBrZXk=", 1))
		s, err := storage.Open(ctx, url, storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		_, err = s.Stat(ctx, "k")
		if err == nil || errors.Is(err, storage.ErrNotFound) || storage.IsTransient(err) {
			t.Fatalf("Stat with a wrong key = %v, want a plain error", err)
		}
		if strings.Contains(err.Error(), "d3Jvbmcga2V5") {
			t.Fatalf("the account key leaked into the error: %v", err)
		}
	})

	t.Run("UnsupportedScheme", func(t *testing.T) {
		if _, err := storage.NewCloud(t.Context(), "ftp://x"); err == nil || !strings.Contains(err.Error(), "ftp") {
			t.Fatalf("NewCloud(ftp://x) = %v", err)
		}
	})
}
