package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	gcs "cloud.google.com/go/storage"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	azblobblob "github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"gocloud.dev/blob"
	"gocloud.dev/blob/azureblob"
	_ "gocloud.dev/blob/gcsblob" // registers gs://
	_ "gocloud.dev/blob/s3blob"  // registers s3://
	"gocloud.dev/gcerrors"
	"google.golang.org/api/googleapi"
)

// Cloud is a Driver over gocloud.dev/blob for azblob://, s3:// and gs:// URLs.
//
// Writes go through Bucket.Upload, never Bucket.NewWriter: in gocloud.dev
// v0.47 the azureblob writer panics in Close when an upload fails.
//
// Cloud itself does not retry, but the SDKs under it retry some failures
// before Cloud sees them (the Azure SDK: 3 retries of 408/429/5xx and
// connection errors, from 800 ms apart).
type Cloud struct {
	bucket  *blob.Bucket
	scheme  string // azblob, s3 or gs
	name    string // container or bucket
	display string // the URL without secrets
}

var _ Driver = (*Cloud)(nil)

// Query parameters safe to show in messages; any other one (a SAS token, a
// key) is dropped from String().
var publicURLParams = []string{
	"prefix", "region", "endpoint", "domain", "protocol", "localemu", "cdn",
	"storage_account", "use_path_style", "disable_https", "dualstack", "fips",
	"accelerate", "anonymous", "awssdk", "hostname_immutable",
}

// Parameters that change where an Azure request goes: with a SAS token in the
// environment they could send it to another host.
var azureOriginParams = []string{"domain", "protocol", "localemu", "cdn", "storage_account"}

// NewCloud opens the bucket named by rawURL (azblob://container,
// s3://bucket?region=..., gs://bucket), with credentials taken as gocloud.dev
// documents them. For Azure: AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY, or
// AZURE_STORAGE_SAS_TOKEN, or AZURE_STORAGE_CONNECTION_STRING, else the default
// Azure credential chain. The Azure environment is read on every call (not
// once per process as gocloud's default opener does), so a process can open
// several accounts one after another.
func NewCloud(ctx context.Context, rawURL string) (*Cloud, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// The parse error would repeat the URL, which may hold a secret.
		return nil, errors.New("cloud storage: cannot parse the storage URL")
	}
	c := &Cloud{scheme: u.Scheme, name: u.Host, display: redactURL(u)}
	if c.name == "" {
		return nil, fmt.Errorf("cloud storage %s: no container or bucket name in URL", c.display)
	}
	var b *blob.Bucket
	switch u.Scheme {
	case "azblob":
		opts := azureblob.NewDefaultServiceURLOptions()
		if opts.SASToken != "" {
			for _, p := range azureOriginParams {
				if u.Query().Has(p) {
					return nil, fmt.Errorf("cloud storage %s: URL parameter %q is not allowed while AZURE_STORAGE_SAS_TOKEN is set", c.display, p)
				}
			}
		}
		mux := new(blob.URLMux)
		mux.RegisterBucket(azureblob.Scheme, &azureblob.URLOpener{
			MakeClient:        newAzureClient,
			ServiceURLOptions: *opts,
		})
		b, err = mux.OpenBucket(ctx, rawURL)
	case "s3", "gs":
		b, err = blob.OpenBucket(ctx, rawURL)
	default:
		return nil, fmt.Errorf("cloud storage: unsupported scheme %q (want azblob, s3 or gs)", u.Scheme)
	}
	if err != nil {
		return nil, fmt.Errorf("cloud storage %s: open: %w", c.display, err)
	}
	c.bucket = b
	return c, nil
}

// newAzureClient builds the container client from the environment as gocloud's
// default does (account and key, else SAS token, else connection string, else the
// default credential chain), but with short SDK retries: the Store retries on top,
// and the SDK's default (3 retries, 4 s to 60 s apart) made an unreachable account
// take about a minute to report.
func newAzureClient(svcURL azureblob.ServiceURL, containerName azureblob.ContainerName) (*container.Client, error) {
	opts := &container.ClientOptions{}
	opts.Retry = policy.RetryOptions{MaxRetries: 2, RetryDelay: 250 * time.Millisecond, MaxRetryDelay: 2 * time.Second}
	containerURL, err := url.JoinPath(string(svcURL), string(containerName))
	if err != nil {
		return nil, err
	}
	account, key := os.Getenv("AZURE_STORAGE_ACCOUNT"), os.Getenv("AZURE_STORAGE_KEY")
	conn := os.Getenv("AZURE_STORAGE_CONNECTION_STRING")
	if conn == "" {
		conn = os.Getenv("AZURE_STORAGEBLOB_CONNECTIONSTRING")
	}
	switch {
	case account != "" && key != "":
		cred, err := azblob.NewSharedKeyCredential(account, key)
		if err != nil {
			return nil, errors.New("AZURE_STORAGE_KEY is not a valid account key")
		}
		return container.NewClientWithSharedKeyCredential(containerURL, cred, opts)
	case os.Getenv("AZURE_STORAGE_SAS_TOKEN") != "":
		return container.NewClientWithNoCredential(containerURL, opts)
	case conn != "":
		return container.NewClientFromConnectionString(conn, string(containerName), opts)
	default:
		cred, err := azidentity.NewDefaultAzureCredential(nil)
		if err != nil {
			return nil, fmt.Errorf("no Azure credentials (set AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN, or use a managed identity): %w", err)
		}
		return container.NewClient(containerURL, cred, opts)
	}
}

func redactURL(u *url.URL) string {
	q := url.Values{}
	for _, p := range publicURLParams {
		if v, ok := u.Query()[p]; ok {
			q[p] = v
		}
	}
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawQuery: q.Encode()}
	return r.String()
}

// String implements Driver.
func (c *Cloud) String() string { return c.display }

// Close implements Driver.
func (c *Cloud) Close() error { return c.bucket.Close() }

// Bucket returns the underlying gocloud bucket (for As, e.g. to rehydrate).
func (c *Cloud) Bucket() *blob.Bucket { return c.bucket }

// Put implements Driver.
func (c *Cloud) Put(ctx context.Context, key string, body io.Reader, size int64, opts PutOptions) error {
	if err := checkKey(key); err != nil {
		return c.wrap("put", key, err)
	}
	if size < 0 {
		return c.wrap("put", key, fmt.Errorf("invalid size %d", size))
	}
	before, err := c.tierSetter(opts.Tier)
	if err != nil {
		return c.wrap("put", key, err)
	}
	lock, err := c.lockSetter(opts.RetainUntil)
	if err != nil {
		return c.wrap("put", key, err)
	}
	er := &exactReader{ctx: ctx, r: body, remaining: size, size: size}
	err = c.bucket.Upload(ctx, key, er, &blob.WriterOptions{
		ContentType: "application/octet-stream",
		IfNotExist:  opts.IfNotExist,
		BeforeWrite: func(as func(any) bool) error {
			for _, f := range []func(func(any) bool) error{before, lock} {
				if f != nil {
					if err := f(as); err != nil {
						return err
					}
				}
			}
			return nil
		},
	})
	if err == nil && er.err == nil && c.scheme == "azblob" && !opts.RetainUntil.IsZero() {
		// Azure sets a blob's immutability policy after the upload, on the version
		// just written (the container needs version-level immutability support).
		err = c.azureSetPolicy(ctx, key, opts.RetainUntil)
	}
	if er.err != nil {
		// The body failed, not the service: report the body's error as it is
		// (transient only if the body said so). Nothing was committed.
		return c.wrap("put", key, er.err)
	}
	if err == nil && er.remaining != 0 {
		// Cannot happen with a conforming backend; never report success for it.
		return c.wrap("put", key, fmt.Errorf("backend stored %d of %d bytes", size-er.remaining, size))
	}
	return c.classify(ctx, "put", key, err, opts.IfNotExist)
}

// exactReader yields exactly size bytes of r, failing (so that the upload is
// not committed) if r ends early or fails.
type exactReader struct {
	ctx       context.Context
	r         io.Reader
	remaining int64
	size      int64
	err       error
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	if e.remaining <= 0 {
		return 0, io.EOF
	}
	if err := e.ctx.Err(); err != nil {
		e.err = err
		return 0, err
	}
	if int64(len(p)) > e.remaining {
		p = p[:e.remaining]
	}
	n, err := e.r.Read(p)
	e.remaining -= int64(n)
	switch {
	case err == io.EOF && e.remaining > 0:
		e.err = fmt.Errorf("body ended after %d of %d bytes", e.size-e.remaining, e.size)
		return n, e.err
	case err != nil && err != io.EOF:
		e.err = err
		return n, err
	}
	if e.remaining == 0 {
		return n, io.EOF
	}
	return n, nil
}

// Generic tier names and what each backend calls them.
var (
	azureTiers = map[string]azblobblob.AccessTier{
		"hot": azblobblob.AccessTierHot, "cool": azblobblob.AccessTierCool,
		"cold": azblobblob.AccessTierCold, "archive": azblobblob.AccessTierArchive,
	}
	s3Classes = map[string]string{
		"hot": "STANDARD", "cool": "STANDARD_IA", "cold": "GLACIER_IR", "archive": "DEEP_ARCHIVE",
	}
	gcsClasses = map[string]string{
		"hot": "STANDARD", "cool": "NEARLINE", "cold": "COLDLINE", "archive": "ARCHIVE",
	}
)

// genericTier maps a backend's tier name back to hot/cool/cold/archive, or
// returns it lower-cased when it has no generic name.
func genericTier(native string, table map[string]string) string {
	for g, n := range table {
		if strings.EqualFold(n, native) {
			return g
		}
	}
	return strings.ToLower(native)
}

// tierSetter returns a BeforeWrite hook that sets the tier. A name that is not
// one of the generic ones is passed to the backend as is (e.g. "GLACIER").
// lockSetter sets a retention lock at upload where the backend takes one then.
func (c *Cloud) lockSetter(until time.Time) (func(as func(any) bool) error, error) {
	if until.IsZero() {
		return nil, nil
	}
	switch c.scheme {
	case "azblob":
		return nil, nil // set after the upload
	case "s3":
		return func(as func(any) bool) error {
			var in *transfermanager.UploadObjectInput
			if !as(&in) {
				return errors.New("cannot set the object lock: unexpected S3 upload input type")
			}
			in.ObjectLockMode = tmtypes.ObjectLockModeGovernance
			in.ObjectLockRetainUntilDate = aws.Time(until)
			return nil
		}, nil
	case "gs":
		return func(as func(any) bool) error {
			var w *gcs.Writer
			if !as(&w) {
				return errors.New("cannot set the retention: unexpected GCS writer type")
			}
			w.Retention = &gcs.ObjectRetention{Mode: "Unlocked", RetainUntil: until}
			return nil
		}, nil
	}
	return nil, fmt.Errorf("retention locks are not supported for scheme %q", c.scheme)
}

func (c *Cloud) azureBlob(key string) (*azblobblob.Client, error) {
	var cc *container.Client
	if !c.bucket.As(&cc) {
		return nil, errors.New("cannot reach the Azure container client")
	}
	return cc.NewBlobClient(key), nil
}

// azureSetPolicy puts an unlocked (shortenable only by a privileged identity, like
// S3's governance mode) immutability policy on a blob.
func (c *Cloud) azureSetPolicy(ctx context.Context, key string, until time.Time) error {
	bc, err := c.azureBlob(key)
	if err != nil {
		return err
	}
	mode := azblobblob.ImmutabilityPolicySettingUnlocked
	_, err = bc.SetImmutabilityPolicy(ctx, until, &azblobblob.SetImmutabilityPolicyOptions{Mode: &mode})
	if err != nil {
		return fmt.Errorf("set immutability policy (the container needs version-level immutability support): %w", condenseAzure(err))
	}
	return nil
}

// Rehydrate starts bringing an archived object back online: Azure sets its tier to
// hot with the given priority; S3 restores a copy for 7 days; GCS needs nothing.
func (c *Cloud) Rehydrate(ctx context.Context, key, priority string) error {
	switch c.scheme {
	case "azblob":
		bc, err := c.azureBlob(key)
		if err != nil {
			return c.wrap("rehydrate", key, err)
		}
		prio := azblobblob.RehydratePriorityStandard
		if priority == "high" {
			prio = azblobblob.RehydratePriorityHigh
		}
		_, err = bc.SetTier(ctx, azblobblob.AccessTierHot, &azblobblob.SetTierOptions{RehydratePriority: &prio})
		return c.classify(ctx, "rehydrate", key, err, false)
	case "s3":
		var sc *s3.Client
		if !c.bucket.As(&sc) {
			return c.wrap("rehydrate", key, errors.New("cannot reach the S3 client"))
		}
		tier := s3types.TierStandard
		if priority == "high" {
			tier = s3types.TierExpedited
		}
		_, err := sc.RestoreObject(ctx, &s3.RestoreObjectInput{Bucket: aws.String(c.name), Key: aws.String(key),
			RestoreRequest: &s3types.RestoreRequest{Days: aws.Int32(7), GlacierJobParameters: &s3types.GlacierJobParameters{Tier: tier}}})
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "RestoreAlreadyInProgress" {
			return nil
		}
		return c.classify(ctx, "rehydrate", key, err, false)
	}
	return nil
}

// CanSetTier implements Tierer: Azure and S3 move objects between tiers in place.
func (c *Cloud) CanSetTier() bool { return c.scheme == "azblob" || c.scheme == "s3" }

// SetTier implements Tierer.
func (c *Cloud) SetTier(ctx context.Context, key, tier string) error {
	g := strings.ToLower(tier)
	switch c.scheme {
	case "azblob":
		bc, err := c.azureBlob(key)
		if err != nil {
			return c.wrap("set tier", key, err)
		}
		at, ok := azureTiers[g]
		if !ok {
			at = azblobblob.AccessTier(tier)
		}
		_, err = bc.SetTier(ctx, at, nil)
		return c.classify(ctx, "set tier", key, err, false)
	case "s3":
		var sc *s3.Client
		if !c.bucket.As(&sc) {
			return c.wrap("set tier", key, errors.New("cannot reach the S3 client"))
		}
		class, ok := s3Classes[g]
		if !ok {
			class = tier
		}
		_, err := sc.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(c.name), Key: aws.String(key),
			CopySource: aws.String(c.name + "/" + key), StorageClass: s3types.StorageClass(class), MetadataDirective: s3types.MetadataDirectiveCopy})
		return c.classify(ctx, "set tier", key, err, false)
	}
	return c.wrap("set tier", key, fmt.Errorf("not supported for scheme %q", c.scheme))
}

func (c *Cloud) tierSetter(tier string) (func(as func(any) bool) error, error) {
	if tier == "" {
		return nil, nil
	}
	g := strings.ToLower(tier)
	switch c.scheme {
	case "azblob":
		at, ok := azureTiers[g]
		if !ok {
			at = azblobblob.AccessTier(tier)
		}
		return func(as func(any) bool) error {
			var o *azblob.UploadStreamOptions
			if !as(&o) {
				return errors.New("cannot set the access tier: unexpected Azure upload options type")
			}
			o.AccessTier = &at
			return nil
		}, nil
	case "s3":
		sc, ok := s3Classes[g]
		if !ok {
			sc = tier
		}
		return func(as func(any) bool) error {
			var in *transfermanager.UploadObjectInput
			if !as(&in) {
				return errors.New("cannot set the storage class: unexpected S3 upload input type")
			}
			in.StorageClass = tmtypes.StorageClass(sc)
			return nil
		}, nil
	case "gs":
		sc, ok := gcsClasses[g]
		if !ok {
			sc = tier
		}
		return func(as func(any) bool) error {
			var w *gcs.Writer
			if !as(&w) {
				return errors.New("cannot set the storage class: unexpected GCS writer type")
			}
			w.StorageClass = sc
			return nil
		}, nil
	}
	return nil, fmt.Errorf("tiers are not supported for scheme %q", c.scheme)
}

// Get implements Driver. Errors from the returned reader are classified too,
// so that a connection reset mid-download is a *TransientError.
func (c *Cloud) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, c.wrap("get", key, err)
	}
	if offset < 0 {
		return nil, c.wrap("get", key, fmt.Errorf("negative offset %d", offset))
	}
	r, err := c.bucket.NewRangeReader(ctx, key, offset, length, nil)
	if err != nil {
		if httpStatus(err) == http.StatusRequestedRangeNotSatisfiable {
			// A range at or past the end (or any range of an empty object):
			// read as empty, as a file would, if the object exists.
			info, serr := c.Stat(ctx, key)
			if serr != nil {
				return nil, serr
			}
			if offset >= info.Size {
				return io.NopCloser(strings.NewReader("")), nil
			}
		}
		return nil, c.classify(ctx, "get", key, err, false)
	}
	return &cloudReader{c: c, ctx: ctx, key: key, r: r}, nil
}

type cloudReader struct {
	c   *Cloud
	ctx context.Context
	key string
	r   *blob.Reader
}

func (r *cloudReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		err = r.c.classify(r.ctx, "read", r.key, err, false)
	}
	return n, err
}

func (r *cloudReader) Close() error { return r.r.Close() }

// Stat implements Driver.
func (c *Cloud) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return ObjectInfo{}, c.wrap("stat", key, err)
	}
	a, err := c.bucket.Attributes(ctx, key)
	if err != nil {
		return ObjectInfo{}, c.classify(ctx, "stat", key, err, false)
	}
	info := ObjectInfo{Key: key, Size: a.Size, ModTime: a.ModTime}
	switch c.scheme {
	case "azblob":
		var p azblobblob.GetPropertiesResponse
		if a.As(&p) {
			if p.AccessTier != nil {
				info.Tier = strings.ToLower(*p.AccessTier)
			}
			info.Rehydrating = p.ArchiveStatus != nil && strings.HasPrefix(strings.ToLower(*p.ArchiveStatus), "rehydrate-pending")
			if p.ImmutabilityPolicyExpiresOn != nil {
				info.LockedUntil = *p.ImmutabilityPolicyExpiresOn
			}
		}
	case "s3":
		var h s3.HeadObjectOutput
		if a.As(&h) {
			// S3 omits the storage class header for STANDARD.
			info.Tier = "hot"
			if h.StorageClass != "" {
				info.Tier = genericTier(string(h.StorageClass), s3Classes)
			}
			info.Rehydrating = h.Restore != nil && strings.Contains(*h.Restore, `ongoing-request="true"`)
			if h.ObjectLockRetainUntilDate != nil {
				info.LockedUntil = *h.ObjectLockRetainUntilDate
			}
		}
	case "gs":
		var oa gcs.ObjectAttrs
		if a.As(&oa) && oa.StorageClass != "" {
			info.Tier = genericTier(oa.StorageClass, gcsClasses)
		}
		if oa.Retention != nil {
			info.LockedUntil = oa.Retention.RetainUntil
		}
	}
	return info, nil
}

// List implements Driver. The services list in lexical key order.
func (c *Cloud) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	if err := checkPrefix(prefix); err != nil {
		return c.wrap("list", prefix, err)
	}
	it := c.bucket.List(&blob.ListOptions{Prefix: prefix})
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return c.classify(ctx, "list", prefix, err, false)
		}
		if obj.IsDir {
			continue
		}
		info := ObjectInfo{Key: obj.Key, Size: obj.Size, ModTime: obj.ModTime}
		var item container.BlobItem
		if c.scheme == "azblob" && obj.As(&item) && item.Properties != nil && item.Properties.AccessTier != nil {
			info.Tier = strings.ToLower(string(*item.Properties.AccessTier))
		}
		if err := fn(info); err != nil {
			return err
		}
	}
}

// Delete implements Driver.
func (c *Cloud) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return c.wrap("delete", key, err)
	}
	err := c.bucket.Delete(ctx, key)
	if err != nil && gcerrors.Code(err) == gcerrors.NotFound && !c.bucketMissing(err) && !isAuthStatus(err) {
		return nil
	}
	return c.classify(ctx, "delete", key, err, false)
}

// Create makes the Azure container or S3 bucket if it does not exist. GCS
// buckets need a project and a location, so the user creates them.
func (c *Cloud) Create(ctx context.Context) error {
	ok, err := c.bucket.IsAccessible(ctx)
	if err != nil {
		return c.classify(ctx, "create", "", err, false)
	}
	if ok {
		return nil
	}
	switch c.scheme {
	case "azblob":
		var cc *container.Client
		if !c.bucket.As(&cc) {
			return c.wrap("create", "", errors.New("no Azure container client"))
		}
		_, err := cc.Create(ctx, nil)
		if err == nil || bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
			return nil
		}
		return c.classify(ctx, "create container", "", err, false)
	case "s3":
		var sc *s3.Client
		if !c.bucket.As(&sc) {
			return c.wrap("create", "", errors.New("no S3 client"))
		}
		in := &s3.CreateBucketInput{Bucket: aws.String(c.name)}
		if r := sc.Options().Region; r != "" && r != "us-east-1" {
			in.CreateBucketConfiguration = &s3types.CreateBucketConfiguration{
				LocationConstraint: s3types.BucketLocationConstraint(r),
			}
		}
		_, err := sc.CreateBucket(ctx, in)
		var owned *s3types.BucketAlreadyOwnedByYou
		if err == nil || errors.As(err, &owned) {
			return nil
		}
		return c.classify(ctx, "create bucket", "", err, false)
	default:
		return c.wrap("create", "", fmt.Errorf("bucket %q does not exist: create it first (for example `gcloud storage buckets create gs://%s --location=...`)", c.name, c.name))
	}
}

func (c *Cloud) wrap(op, key string, err error) error {
	if key == "" {
		return fmt.Errorf("%s: %s: %w", c.display, op, err)
	}
	return fmt.Errorf("%s: %s %q: %w", c.display, op, key, err)
}

// classify maps a gocloud error to ErrNotFound, ErrExists, a *TransientError
// (gocloud v0.47 has no Unavailable code: 503s are caught by their status),
// or a plain wrapped error, keeping where it happened in the message.
func (c *Cloud) classify(ctx context.Context, op, key string, err error, excl bool) error {
	if err == nil {
		return nil
	}
	// net/http puts the request URL, query included, in its errors: that
	// would be a SAS token in our messages and logs.
	var ue *url.Error
	if errors.As(err, &ue) {
		if i := strings.IndexByte(ue.URL, '?'); i >= 0 {
			ue.URL = ue.URL[:i] + "?REDACTED"
		}
	}
	err = condenseAzure(err)
	if ue != nil && ue.Err != nil {
		// gocloud's text repeats the key and the whole request URL around the cause.
		err = condensed{msg: ue.Err.Error(), err: err}
	}
	if cerr := ctx.Err(); cerr != nil {
		// The caller gave up: not worth a retry, whatever the backend said.
		return c.wrap(op, key, fmt.Errorf("%w (%v)", cerr, err))
	}
	if c.bucketMissing(err) {
		what := "bucket"
		if c.scheme == "azblob" {
			what = "container"
		}
		return c.wrap(op, key, fmt.Errorf("%s %q does not exist (create the repository first): %w", what, c.name, err))
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		// gocloud calls this NotFound (a wrong account name); it is no missing object.
		return c.wrap(op, key, err)
	}
	switch gcerrors.Code(err) {
	case gcerrors.NotFound:
		if !isAuthStatus(err) {
			return c.wrap(op, key, ErrNotFound)
		}
	case gcerrors.FailedPrecondition, gcerrors.AlreadyExists:
		if excl {
			return c.wrap(op, key, ErrExists)
		}
	case gcerrors.ResourceExhausted, gcerrors.Internal, gcerrors.DeadlineExceeded:
		return &TransientError{Err: c.wrap(op, key, err)}
	}
	if isTransientErr(err) {
		return &TransientError{Err: c.wrap(op, key, err)}
	}
	return c.wrap(op, key, err)
}

// condensed replaces an error's text and keeps its chain.
type condensed struct {
	msg string
	err error
}

func (c condensed) Error() string { return c.msg }
func (c condensed) Unwrap() error { return c.err }

// condenseAzure shortens the Azure SDK's multi-line error text (request,
// separators, response body) to one line with the status and error code.
func condenseAzure(err error) error {
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return err
	}
	msg := fmt.Sprintf("HTTP %d", re.StatusCode)
	if re.ErrorCode != "" {
		msg += " " + re.ErrorCode
	}
	if r := re.RawResponse; r != nil && r.Request != nil {
		msg = r.Request.Method + " " + r.Request.URL.EscapedPath() + ": " + msg
	}
	return condensed{msg: msg, err: err}
}

func (c *Cloud) bucketMissing(err error) bool {
	switch c.scheme {
	case "azblob":
		return bloberror.HasCode(err, bloberror.ContainerNotFound)
	case "s3":
		var ae smithy.APIError
		return errors.As(err, &ae) && ae.ErrorCode() == "NoSuchBucket"
	case "gs":
		return errors.Is(err, gcs.ErrBucketNotExist)
	}
	return false
}

// httpStatus digs the HTTP status out of an Azure, AWS or Google error, or 0.
func httpStatus(err error) int {
	var az *azcore.ResponseError
	if errors.As(err, &az) {
		return az.StatusCode
	}
	var hs interface{ HTTPStatusCode() int }
	if errors.As(err, &hs) {
		return hs.HTTPStatusCode()
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code
	}
	return 0
}

func isAuthStatus(err error) bool {
	s := httpStatus(err)
	return s == http.StatusUnauthorized || s == http.StatusForbidden
}

// S3 error codes worth a retry that do not come with a 5xx status.
var s3TransientCodes = []string{"RequestTimeout", "SlowDown", "InternalError", "ServiceUnavailable", "ConditionalRequestConflict", "RequestTimeTooSkewed"}

// isTransientErr recognises throttling, server errors and broken connections.
func isTransientErr(err error) bool {
	switch httpStatus(err) {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	var ae smithy.APIError
	if errors.As(err, &ae) && slices.Contains(s3TransientCodes, ae.ErrorCode()) {
		return true
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ETIMEDOUT) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	// Dial, read and write failures (a TLS certificate error is no OpError).
	var oe *net.OpError
	if errors.As(err, &oe) {
		return true
	}
	// The server closed the connection before answering.
	var ue *url.Error
	if errors.As(err, &ue) && errors.Is(ue.Err, io.EOF) {
		return true
	}
	// Some SDK layers flatten errors to text.
	msg := err.Error()
	for _, s := range []string{"connection reset by peer", "connection refused", "broken pipe", "unexpected EOF", "http2: server sent GOAWAY", "TLS handshake timeout"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
