package ipam

// intervalSet is a set of u128 values stored as sorted, disjoint,
// non-adjacent intervals in an AVL tree keyed by interval start. Every
// operation is O(log n) in the number of intervals, whatever their sizes.
// The allocator keeps one per pool and family holding the free addresses,
// so "lowest free address" is the first value of the leftmost interval.
type intervalSet struct {
	root *avlNode
}

type avlNode struct {
	iv          interval
	left, right *avlNode
	height      int
}

// newIntervalSet returns a set holding ivs, which must be sorted, disjoint
// and non-adjacent.
func newIntervalSet(ivs []interval) intervalSet {
	var s intervalSet
	for _, iv := range ivs {
		s.root = avlInsert(s.root, iv)
	}
	return s
}

// min returns the lowest value in the set.
func (s *intervalSet) min() (u128, bool) {
	n := s.root
	if n == nil {
		return u128{}, false
	}
	for n.left != nil {
		n = n.left
	}
	return n.iv.first, true
}

// floor returns the node with the greatest start <= x, or nil.
func (s *intervalSet) floor(x u128) *avlNode {
	var best *avlNode
	for n := s.root; n != nil; {
		if x.less(n.iv.first) {
			n = n.left
		} else {
			best = n
			n = n.right
		}
	}
	return best
}

// ceilAfter returns the node with the least start > x, or nil.
func (s *intervalSet) ceilAfter(x u128) *avlNode {
	var best *avlNode
	for n := s.root; n != nil; {
		if x.less(n.iv.first) {
			best = n
			n = n.left
		} else {
			n = n.right
		}
	}
	return best
}

// remove takes x out of the set. x must be in the set; otherwise remove does
// nothing.
func (s *intervalSet) remove(x u128) {
	n := s.floor(x)
	if n == nil || !n.iv.contains(x) {
		return
	}
	switch {
	case n.iv.first == n.iv.last:
		s.root = avlDelete(s.root, x)
	case x == n.iv.first:
		// The start moves up but stays below the next interval's start,
		// so the tree order holds.
		n.iv.first = x.inc()
	case x == n.iv.last:
		n.iv.last = x.dec()
	default:
		tail := interval{x.inc(), n.iv.last}
		n.iv.last = x.dec()
		s.root = avlInsert(s.root, tail)
	}
}

// add puts x into the set, merging it with the neighbouring intervals. x
// must not be in the set; otherwise add does nothing.
func (s *intervalSet) add(x u128) {
	prev := s.floor(x)
	if prev != nil && prev.iv.contains(x) {
		return
	}
	next := s.ceilAfter(x)
	joinPrev := prev != nil && prev.iv.last.inc() == x
	joinNext := next != nil && x.inc() == next.iv.first
	switch {
	case joinPrev && joinNext:
		// Deleting next changes at most next's node and its successor's,
		// never prev's.
		prev.iv.last = next.iv.last
		s.root = avlDelete(s.root, next.iv.first)
	case joinPrev:
		prev.iv.last = x
	case joinNext:
		// The start moves down but stays above the previous interval's
		// end, so the tree order holds.
		next.iv.first = x
	default:
		s.root = avlInsert(s.root, interval{x, x})
	}
}

func avlHeight(n *avlNode) int {
	if n == nil {
		return 0
	}
	return n.height
}

func (n *avlNode) fix() { n.height = 1 + max(avlHeight(n.left), avlHeight(n.right)) }

func avlRotateRight(n *avlNode) *avlNode {
	l := n.left
	n.left, l.right = l.right, n
	n.fix()
	l.fix()
	return l
}

func avlRotateLeft(n *avlNode) *avlNode {
	r := n.right
	n.right, r.left = r.left, n
	n.fix()
	r.fix()
	return r
}

func avlBalance(n *avlNode) *avlNode {
	n.fix()
	switch bf := avlHeight(n.left) - avlHeight(n.right); {
	case bf > 1:
		if avlHeight(n.left.left) < avlHeight(n.left.right) {
			n.left = avlRotateLeft(n.left)
		}
		return avlRotateRight(n)
	case bf < -1:
		if avlHeight(n.right.right) < avlHeight(n.right.left) {
			n.right = avlRotateRight(n.right)
		}
		return avlRotateLeft(n)
	}
	return n
}

// avlInsert adds iv, whose start is not yet in the tree, and returns the new
// root.
func avlInsert(n *avlNode, iv interval) *avlNode {
	if n == nil {
		return &avlNode{iv: iv, height: 1}
	}
	if iv.first.less(n.iv.first) {
		n.left = avlInsert(n.left, iv)
	} else {
		n.right = avlInsert(n.right, iv)
	}
	return avlBalance(n)
}

// avlDelete removes the interval starting at first and returns the new root.
func avlDelete(n *avlNode, first u128) *avlNode {
	if n == nil {
		return nil
	}
	switch c := first.cmp(n.iv.first); {
	case c < 0:
		n.left = avlDelete(n.left, first)
	case c > 0:
		n.right = avlDelete(n.right, first)
	default:
		if n.left == nil {
			return n.right
		}
		if n.right == nil {
			return n.left
		}
		m := n.right
		for m.left != nil {
			m = m.left
		}
		n.iv = m.iv
		n.right = avlDelete(n.right, m.iv.first)
	}
	return avlBalance(n)
}
