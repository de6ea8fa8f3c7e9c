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
// session, which would need an IPv6 next hop the session does not have (GoBGP would send an
// IPv4-mapped one), nor the reverse. A dual-stack node
// peers over both families to advertise both. LOCAL_PREF is sent to iBGP peers only.
//
// [Route.Peers] restricts a route to some peers, by GoBGP's global export policy: for each
// peer that must not get some routes, a statement rejects the prefix set of those routes for
// the neighbor set of that peer. When the peers of a route that stays advertised change, the
// peers concerned are re-sent their routes (a soft reset out, no session reset), which
// withdraws the routes they no longer get.
//
// [Engine.SetGracefulShutdown] re-advertises every route with the GRACEFUL_SHUTDOWN community
// (RFC 8326, 65535:0); routers configured to honour it (e.g. by a route-map that matches
// the community and lowers LOCAL_PREF) then prefer other paths. Routes set afterwards carry
// it too.
//
// # BFD
//
// A peer's BFD session follows its BGP session: Run attaches it (GoBGP makes a fresh one)
// once the session is established and detaches it as soon as it sees the session down; it
// never resets the session. FRR makes its BFD session with a node when the node connects
// (a listen range) or re-makes it then with the connection's local address (an explicit
// neighbor); a GoBGP BFD session started before that binds itself to FRR's first one,
// ignores the new one, expires and resets the BGP session, again with every new session.
// Attached to an established session, it meets FRR's final one; detached, it cannot expire
// while the session is down, which is what queues the stale reset of osrg/gobgp#3561 below.
//
// # Recovery
//
// A session that goes down reconnects after IdleHoldTimeAfterReset (default 1 s; GoBGP's is
// 30 s) when GoBGP reset it itself, else after GoBGP's fixed 5 s, with connection attempts
// every ConnectRetry (default 2 s; GoBGP's is 120 s). GoBGP v4.8.0 can also keep a session
// down: a BFD expiry while the session is already idle queues an administrative reset ("BFD
// is down") that tears down the next session as soon as it is established (osrg/gobgp#3561,
// fixed in v4.9.0). Run reads the sessions' state every PollInterval and deletes and
// re-adds the peer (which drops whatever GoBGP had queued for it and connects within 2 s) of a
// session that is not established:
//   - idle for IdleHoldTimeAfterReset + 1 s, once per time the session was established;
//   - not stably established (for StableAfter) RecoverAfter after it went down, the peer was
//     added, the last such recovery, or its BFD session came up, whichever is last; a
//     recovery that does not help doubles the wait, up to eight times.
//
// An established session is never recovered.
package bgp
