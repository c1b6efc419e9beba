package memory_test

import (
	"testing"

	"github.com/secretfs/secretfs/store"
	"github.com/secretfs/secretfs/store/memory"
	"github.com/secretfs/secretfs/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) store.Store { return memory.New() })
}

// A small limit proves the size check follows NewWithLimit, not a constant.
func TestConformanceSmallLimit(t *testing.T) {
	storetest.Run(t, func(*testing.T) store.Store { return memory.NewWithLimit(100) })
}
