package metrics_test

import (
	"strings"
	"testing"

	"github.com/secretfs/secretfs/crypto"
	"github.com/secretfs/secretfs/metrics"
	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/store/memory"
	"github.com/secretfs/secretfs/store/storetest"
)

// The decorator keeps the Store contract, for either naming of the
// operations, and the size limit of the store it wraps.
func TestConformance(t *testing.T) {
	for _, service := range []string{"dynamodb", "sqlite"} {
		t.Run(service, func(t *testing.T) {
			storetest.Run(t, func(*testing.T) store.Store {
				return metrics.New("test", metrics.Options{}).WrapStore(memory.New(), service)
			})
		})
	}
}

func TestConformanceSmallLimit(t *testing.T) {
	storetest.Run(t, func(*testing.T) store.Store {
		return metrics.New("test", metrics.Options{}).WrapStore(memory.NewWithLimit(100), "dynamodb")
	})
}

func TestSizerKept(t *testing.T) {
	r := metrics.New("test", metrics.Options{})
	sz, ok := r.WrapStore(memory.NewWithLimit(1234), "sqlite").(store.Sizer)
	if !ok {
		t.Fatal("a wrapped Sizer is not a Sizer")
	}
	if got := sz.MaxValueSize(); got != 1234 {
		t.Errorf("MaxValueSize = %d, want 1234", got)
	}
	// A store without a limit does not gain one.
	plain := struct{ store.Store }{memory.New()}
	if _, ok := r.WrapStore(plain, "sqlite").(store.Sizer); ok {
		t.Error("a wrapped store without Sizer became a Sizer")
	}
}

// A metered key wrapper keeps the wrapped one's Owns, so that a Keyring
// of metered wrappers routes items as it would without metrics: an RSA
// reader must not claim a KMS item.
func TestMeteredKeysKeepOwns(t *testing.T) {
	r := metrics.New("test", metrics.Options{})
	rsa := r.WrapKeys(owner{prefix: "rsa:"}, "rsa")
	o, ok := rsa.(crypto.Owner)
	if !ok {
		t.Fatal("a metered wrapper does not tell what it owns")
	}
	if !o.Owns("rsa:sha256:ab") || o.Owns("arn:aws:kms:eu-west-1:1:key/x") {
		t.Error("a metered wrapper does not pass on the wrapped one's Owns")
	}
}

// owner is a KeyWrapper that owns the ids with its prefix.
type owner struct {
	crypto.KeyWrapper
	prefix string
}

func (o owner) Owns(id string) bool { return strings.HasPrefix(id, o.prefix) }
