package azurite

import (
	"context"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
)

func TestContainerName(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z0-9]([a-z0-9]|-[a-z0-9])*$`)
	for _, in := range []string{
		"TestAzuriteSuite/RoundTrip", "x", "", "--", "Ünïcödé names", strings.Repeat("long-", 30), "a__b",
	} {
		got := containerName(in, 12)
		if len(got) < 3 || len(got) > 63 || !valid.MatchString(got) || !strings.HasSuffix(got, "-12") {
			t.Errorf("containerName(%q) = %q: not a valid Azure container name", in, got)
		}
	}
	if a, b := containerName("same", 1), containerName("same", 2); a == b {
		t.Errorf("same name twice gave %q both times", a)
	}
}

func TestServerLifecycle(t *testing.T) {
	var addr string
	t.Run("run", func(t *testing.T) {
		srv := Start(t)
		addr = srv.addr()
		if !strings.Contains(srv.ConnectionString(), "BlobEndpoint=http://"+addr+"/devstoreaccount1;") {
			t.Fatalf("connection string %q lacks the endpoint", srv.ConnectionString())
		}
		url := srv.Container(t, t.Name())
		name := strings.TrimPrefix(url, "azblob://")
		client, err := azblob.NewClientFromConnectionString(srv.ConnectionString(), nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		if _, err := client.UploadBuffer(ctx, name, "hello", []byte("world"), nil); err != nil {
			t.Fatalf("upload into the new container %s: %v", name, err)
		}
		if env := srv.Env(); !strings.HasPrefix(env[0], "AZURE_STORAGE_CONNECTION_STRING=DefaultEndpointsProtocol=http;") {
			t.Fatalf("Env() = %q", env)
		}
	})
	// The subtest's cleanup stopped the emulator.
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("azurite still accepts connections on %s after its test ended", addr)
	}
}
