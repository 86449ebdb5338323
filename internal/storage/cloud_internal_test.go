package storage

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	gcs "cloud.google.com/go/storage"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	azblobblob "github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
)

func testCloud(scheme string) *Cloud {
	return &Cloud{scheme: scheme, name: "c", display: scheme + "://c"}
}

// A real connection-refused error from net/http.
func refusedError(t *testing.T) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	resp, err := http.Get("http://" + addr + "/x?sig=SECRET")
	if err == nil {
		resp.Body.Close()
		t.Fatal("request to a closed port succeeded")
	}
	return err
}

// A real mid-body connection drop: the server promises 1000 bytes, sends 10.
func truncatedBodyError(t *testing.T) error {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(200)
		_, _ = w.Write([]byte("0123456789"))
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, err = io.ReadAll(resp.Body)
	if err == nil {
		t.Fatal("truncated body read without error")
	}
	return err
}

func TestCloudClassify(t *testing.T) {
	c := testCloud("azblob")
	ctx := t.Context()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	refused := refusedError(t)
	cases := []struct {
		name      string
		ctx       context.Context
		err       error
		transient bool
		is        error
	}{
		{"connection refused", ctx, refused, true, nil},
		{"body cut mid-stream", ctx, truncatedBodyError(t), true, nil},
		{"503", ctx, &azcore.ResponseError{StatusCode: 503, ErrorCode: "ServerBusy"}, true, nil},
		{"500", ctx, &azcore.ResponseError{StatusCode: 500, ErrorCode: "InternalError"}, true, nil},
		{"429", ctx, &azcore.ResponseError{StatusCode: 429}, true, nil},
		{"400", ctx, &azcore.ResponseError{StatusCode: 400, ErrorCode: "InvalidHeaderValue"}, false, nil},
		{"caller cancelled", cancelled, refused, false, context.Canceled},
		{"unexpected EOF", ctx, io.ErrUnexpectedEOF, true, nil},
		{"unknown host", ctx, &url.Error{Op: "Get", URL: "https://nosuchaccount.blob.core.windows.net/", Err: &net.DNSError{Err: "no such host", Name: "nosuchaccount.blob.core.windows.net", IsNotFound: true}}, false, nil},
		{"bad certificate", ctx, &url.Error{Op: "Get", URL: "https://x/", Err: x509.UnknownAuthorityError{}}, false, nil},
		{"plain", ctx, errors.New("something else"), false, nil},
	}
	for _, tc := range cases {
		err := c.classify(tc.ctx, "get", "some/key", tc.err, false)
		if IsTransient(err) != tc.transient {
			t.Errorf("%s: IsTransient(%v) = %v, want %v", tc.name, err, !tc.transient, tc.transient)
		}
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("%s: %v does not wrap %v", tc.name, err, tc.is)
		}
		if errors.Is(err, ErrNotFound) {
			t.Errorf("%s: classified as not found: %v", tc.name, err)
		}
		if !strings.Contains(err.Error(), `"some/key"`) || !strings.Contains(err.Error(), "azblob://c") {
			t.Errorf("%s: message lacks the key or backend: %v", tc.name, err)
		}
	}
	if err := c.classify(ctx, "get", "k", refused, false); strings.Contains(err.Error(), "SECRET") {
		t.Errorf("a URL query (SAS token) leaked into the error: %v", err)
	}
}

func TestRedactURL(t *testing.T) {
	u, _ := url.Parse("s3://bucket/sub?region=eu-west-1&prefix=x/&sig=SECRET&access_key=AKIA")
	got := redactURL(u)
	if strings.Contains(got, "SECRET") || strings.Contains(got, "AKIA") {
		t.Fatalf("redactURL kept a secret: %s", got)
	}
	for _, want := range []string{"s3://bucket/sub", "region=eu-west-1", "prefix=x"} {
		if !strings.Contains(got, want) {
			t.Fatalf("redactURL = %s, lacks %s", got, want)
		}
	}
}

func TestTierMapping(t *testing.T) {
	for native, want := range map[string]string{"STANDARD_IA": "cool", "GLACIER_IR": "cold", "DEEP_ARCHIVE": "archive", "INTELLIGENT_TIERING": "intelligent_tiering"} {
		if got := genericTier(native, s3Classes); got != want {
			t.Errorf("S3 %s -> %q, want %q", native, got, want)
		}
	}
	for native, want := range map[string]string{"NEARLINE": "cool", "COLDLINE": "cold", "ARCHIVE": "archive", "STANDARD": "hot"} {
		if got := genericTier(native, gcsClasses); got != want {
			t.Errorf("GCS %s -> %q, want %q", native, got, want)
		}
	}
	// Each backend's BeforeWrite hook sets its own field.
	var s3in transfermanager.UploadObjectInput
	hook, err := testCloud("s3").tierSetter("cold")
	if err != nil {
		t.Fatal(err)
	}
	if err := hook(func(i any) bool {
		p, ok := i.(**transfermanager.UploadObjectInput)
		if ok {
			*p = &s3in
		}
		return ok
	}); err != nil {
		t.Fatal(err)
	}
	if s3in.StorageClass != "GLACIER_IR" {
		t.Errorf("S3 storage class %q, want GLACIER_IR", s3in.StorageClass)
	}
	var gw gcs.Writer
	hook, _ = testCloud("gs").tierSetter("Archive")
	if err := hook(func(i any) bool {
		p, ok := i.(**gcs.Writer)
		if ok {
			*p = &gw
		}
		return ok
	}); err != nil {
		t.Fatal(err)
	}
	if gw.StorageClass != "ARCHIVE" {
		t.Errorf("GCS storage class %q, want ARCHIVE", gw.StorageClass)
	}
	var ao azblob.UploadStreamOptions
	hook, _ = testCloud("azblob").tierSetter("cool")
	if err := hook(func(i any) bool {
		p, ok := i.(**azblob.UploadStreamOptions)
		if ok {
			*p = &ao
		}
		return ok
	}); err != nil {
		t.Fatal(err)
	}
	if ao.AccessTier == nil || *ao.AccessTier != azblobblob.AccessTierCool {
		t.Errorf("Azure access tier %v, want Cool", ao.AccessTier)
	}
	// A hook given the wrong type fails instead of silently keeping the default tier.
	hook, _ = testCloud("azblob").tierSetter("hot")
	if err := hook(func(any) bool { return false }); err == nil {
		t.Error("tier hook accepted an unknown options type")
	}
	if hook, err := testCloud("s3").tierSetter(""); hook != nil || err != nil {
		t.Error("empty tier should set nothing")
	}
}
