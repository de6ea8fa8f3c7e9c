// Package ipam is the allocation engine of onprem-lb: it hands out external
// addresses from IP pools to Services of type LoadBalancer. It is pure Go,
// knows nothing of Kubernetes (a provider translates Services into Requests
// and pool YAML into Pools) and speaks net/netip.
//
// What it promises:
//
//   - Pools are validated as a whole: names are unique DNS labels; address
//     entries are CIDRs, first-last ranges or single addresses, IPv4 and
//     IPv6 mixed, and overlap neither each other nor another pool's;
//     exclude entries lie inside their pool. A bad pool list is rejected
//     with a *PoolError naming the pool, the field and the reason, and
//     changes nothing.
//   - A Service gets addresses only from pools it may use: its namespace is
//     allowed, its labels match the serviceSelector, and the pool has
//     autoAssign or the Service asks for it by name or for one of its
//     addresses. Excluded addresses, and with avoidBuggyIPs the IPv4 .0 and
//     .255 addresses, are never handed out.
//   - Allocation is deterministic: among the pools a Service may use, the
//     highest priority wins, then the name in lexical order, and within a
//     pool the lowest free address. It is idempotent: a Service that
//     already holds addresses satisfying its request gets them again.
//   - An address is held by one Service, or shared by Services of one
//     namespace with the same sharing key whose (protocol, port) pairs do
//     not collide and whose pod selectors (externalTrafficPolicy Local) are
//     equal. It is freed when its last user releases it.
//   - A request that cannot be met returns a *RequestError wrapping a
//     sentinel (ErrPoolExhausted, ErrIPInUse, ...) that says exactly why,
//     and changes nothing: it never takes an address from another Service.
//     ReasonOf gives each error a stable short reason for metrics and
//     events.
//   - Allocate, Assign and Release are O(log n) in the number of
//     allocations, whatever the size of the pools (plus a walk over the
//     pool list, and over the addresses already shared under the Service's
//     sharing key): free addresses are kept as merged intervals of 128-bit
//     integers in a balanced tree, so finding the lowest free address is a
//     tree lookup, and a /64 or /48 IPv6 pool is never enumerated and costs
//     no more memory than a /120. Stats counts addresses with saturating
//     uint64 arithmetic.
//   - Reconfigure swaps the pools atomically and keeps every address that
//     is still allowed; the others are returned with the reason, so the
//     caller can move those Services.
//   - An Allocator is safe for concurrent use; one mutex serializes it.
//
// The state lives in memory only: the Service status is the source of
// truth, and Assign rebuilds the state from it after a restart.
package ipam
