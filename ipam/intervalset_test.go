package ipam

import (
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func v(n uint64) u128 { return u128{lo: n} }

var maxU128 = u128{math.MaxUint64, math.MaxUint64}

func contents(s *intervalSet) []interval {
	var out []interval
	var walk func(n *avlNode)
	walk = func(n *avlNode) {
		if n != nil {
			walk(n.left)
			out = append(out, n.iv)
			walk(n.right)
		}
	}
	walk(s.root)
	return out
}

func TestIntervalSet(t *testing.T) {
	type op struct {
		add bool
		x   u128
	}
	tests := []struct {
		name  string
		start []interval
		ops   []op
		want  []interval
	}{
		{
			name:  "remove first shrinks from the left",
			start: []interval{{v(10), v(20)}},
			ops:   []op{{false, v(10)}},
			want:  []interval{{v(11), v(20)}},
		},
		{
			name:  "remove last shrinks from the right",
			start: []interval{{v(10), v(20)}},
			ops:   []op{{false, v(20)}},
			want:  []interval{{v(10), v(19)}},
		},
		{
			name:  "remove middle splits",
			start: []interval{{v(10), v(20)}},
			ops:   []op{{false, v(15)}},
			want:  []interval{{v(10), v(14)}, {v(16), v(20)}},
		},
		{
			name:  "remove single deletes",
			start: []interval{{v(1), v(1)}, {v(5), v(5)}},
			ops:   []op{{false, v(1)}},
			want:  []interval{{v(5), v(5)}},
		},
		{
			name:  "remove absent does nothing",
			start: []interval{{v(10), v(20)}},
			ops:   []op{{false, v(9)}, {false, v(21)}},
			want:  []interval{{v(10), v(20)}},
		},
		{
			name:  "add bridges two intervals",
			start: []interval{{v(10), v(14)}, {v(16), v(20)}},
			ops:   []op{{true, v(15)}},
			want:  []interval{{v(10), v(20)}},
		},
		{
			name:  "add extends left and right neighbours",
			start: []interval{{v(10), v(14)}, {v(20), v(30)}},
			ops:   []op{{true, v(15)}, {true, v(19)}},
			want:  []interval{{v(10), v(15)}, {v(19), v(30)}},
		},
		{
			name:  "add alone inserts",
			start: []interval{{v(10), v(14)}},
			ops:   []op{{true, v(0)}, {true, v(100)}},
			want:  []interval{{v(0), v(0)}, {v(10), v(14)}, {v(100), v(100)}},
		},
		{
			name:  "add present does nothing",
			start: []interval{{v(10), v(14)}},
			ops:   []op{{true, v(12)}},
			want:  []interval{{v(10), v(14)}},
		},
		{
			name:  "whole 128-bit space",
			start: []interval{{u128{}, maxU128}},
			ops:   []op{{false, u128{}}, {false, maxU128}, {false, u128{1, 0}}, {true, maxU128}, {true, u128{}}},
			want:  []interval{{u128{}, u128{0, math.MaxUint64}}, {u128{1, 1}, maxU128}},
		},
		{
			name:  "carry across the 64-bit boundary",
			start: []interval{{u128{0, math.MaxUint64}, u128{1, 0}}},
			ops:   []op{{false, u128{0, math.MaxUint64}}},
			want:  []interval{{u128{1, 0}, u128{1, 0}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newIntervalSet(tt.start)
			for _, o := range tt.ops {
				if o.add {
					s.add(o.x)
				} else {
					s.remove(o.x)
				}
				if _, err := checkTree(s.root); err != nil {
					t.Fatal(err)
				}
			}
			if diff := cmp.Diff(tt.want, contents(&s), cmp.AllowUnexported(interval{}, u128{})); diff != "" {
				t.Errorf("intervals (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIntervalSetBalanced(t *testing.T) {
	// Free every other value of a large range one by one: 5,000 intervals,
	// whose tree must stay logarithmic.
	s := newIntervalSet([]interval{{v(0), v(9999)}})
	for x := uint64(1); x < 10000; x += 2 {
		s.remove(v(x))
	}
	if _, err := checkTree(s.root); err != nil {
		t.Fatal(err)
	}
	if h := s.root.height; h > 18 { // AVL height <= 1.44 log2(n+2)
		t.Errorf("height %d for 5000 intervals", h)
	}
	for x := uint64(1); x < 10000; x += 2 {
		s.add(v(x))
	}
	if diff := cmp.Diff([]interval{{v(0), v(9999)}}, contents(&s), cmp.AllowUnexported(interval{}, u128{})); diff != "" {
		t.Errorf("intervals (-want +got):\n%s", diff)
	}
}

// FuzzIntervalSet runs add and remove operations on a small universe and
// compares the set with a plain bitmap after each one.
func FuzzIntervalSet(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	f.Add([]byte{255, 0, 128, 127, 129, 1, 254})
	f.Fuzz(func(t *testing.T, ops []byte) {
		const n = 128
		var model [n]bool
		for i := 10; i < 100; i++ {
			model[i] = true
		}
		s := newIntervalSet([]interval{{v(10), v(99)}})
		for _, b := range ops {
			x := uint64(b % n)
			if b >= n {
				s.add(v(x))
				model[x] = true
			} else {
				s.remove(v(x))
				model[x] = false
			}
			if _, err := checkTree(s.root); err != nil {
				t.Fatal(err)
			}
			var got [n]bool
			for _, iv := range contents(&s) {
				for y := iv.first.lo; y <= iv.last.lo; y++ {
					got[y] = true
				}
			}
			if got != model {
				t.Fatalf("after %d: set %v, model differs", b, contents(&s))
			}
			lowest, ok := s.min()
			for y := range model {
				if model[y] {
					if !ok || lowest != v(uint64(y)) {
						t.Fatalf("min %v %v, want %d", lowest, ok, y)
					}
					break
				}
			}
		}
	})
}

func TestMergeAndSubtractIntervals(t *testing.T) {
	opts := cmp.AllowUnexported(interval{}, u128{})
	got := mergeIntervals([]interval{{v(20), v(30)}, {v(0), v(5)}, {v(6), v(9)}, {v(25), v(40)}, {u128{0, 50}, maxU128}, {maxU128, maxU128}})
	want := []interval{{v(0), v(9)}, {v(20), v(40)}, {v(50), maxU128}}
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("merge (-want +got):\n%s", diff)
	}
	got = subtractIntervals(
		[]interval{{v(0), v(9)}, {v(20), v(40)}, {v(50), v(60)}},
		[]interval{{v(0), v(0)}, {v(5), v(25)}, {v(30), v(30)}, {v(40), v(55)}})
	want = []interval{{v(1), v(4)}, {v(26), v(29)}, {v(31), v(39)}, {v(56), v(60)}}
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("subtract (-want +got):\n%s", diff)
	}
}
