// Package bgp is the speaker's BGP engine: one embedded GoBGP (v4) instance per node that
// keeps sessions with the upstream routers and advertises routes to the node's addresses.
//
// # Contracts
//
// [Engine.SetPeers] and [Engine.SetRoutes] are declarative: each call gives the whole set,
// and the engine applies the difference with what it has. A peer whose [Peer] value is ==
// to the one it had is never touched: its session is neither reset nor updated. A peer whose
// value changed is deleted and added again, which resets its session; a peer that is gone is
// deleted (its session closed with a Cease NOTIFICATION). Changing routes never resets a
// session: new and changed routes are advertised (a changed route replaces the old one), gone
// routes withdrawn. Both may be called before [Engine.Run]: the engine then configures
// GoBGP with them when Run starts.
//
// Sessions are outgoing only: GoBGP opens no BGP listening socket (it does listen on UDP 3784
// for BFD). Each session carries one address family, that of the peer's address: IPv4
// prefixes are sent to IPv4 peers only, IPv6 prefixes to IPv6 peers only. So every route's
// next hop is an address of the node of the route's own family: next-hop-self, the local
// address of the session, for eBGP and iBGP peers alike; no IPv6 route is sent over an IPv4
// session (with an IPv4-mapped next hop FRR cannot use) nor the reverse. A dual-stack node
// peers over both families to advertise both. LOCAL_PREF is sent to iBGP peers only.
//
// [Route.Peers] restricts a route to some peers, by GoBGP's global export policy: for each
// peer that must not get some routes, a statement rejects the prefix set of those routes for
// the neighbor set of that peer. When the peers of a route that stays advertised change, the
// peers concerned are re-sent their routes (a soft reset out, no session reset), which
// withdraws the routes they no longer get.
//
// [Engine.GracefulShutdown] re-advertises every route with the GRACEFUL_SHUTDOWN community
// (RFC 8326, 65535:0); routers that honour it (FRR does by default) then prefer other paths.
//
// # Recovery
//
// A session that goes down reconnects after IdleHoldTimeAfterReset (default 1 s; GoBGP's is
// 30 s) with connection attempts every ConnectRetry (default 2 s; GoBGP's is 120 s). GoBGP
// v4.8.0 can keep a session down: a BFD expiry while the session is already idle queues an
// administrative reset ("BFD is down") that tears down the next session as soon as it is
// established (osrg/gobgp#3561, fixed in v4.9.0). Run therefore reads the sessions' state
// every PollInterval and recovers a session that is not stably established (for
// StableAfter) RecoverAfter after it went down, the peer was added, or its BFD session came
// up again: it deletes and re-adds the peer, which drops whatever GoBGP had queued for it.
// A recovery that does not help doubles the wait, up to eight times.
package bgp
