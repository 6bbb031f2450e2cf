import SkywireConfig
import SkywireCrypto

/// Addresses a resolver (the discovery service, docs/discovery.md) knows for a key.
public struct ResolvedPeer: Sendable, Equatable {
    public var stcpr: [HostPort]
    /// The key's observed sudph address (its live BIND), if any.
    public var sudph: HostPort?

    public init(stcpr: [HostPort], sudph: HostPort?) {
        self.stcpr = stcpr
        self.sudph = sudph
    }
}

/// Looks up the dial addresses of a key that `transport.peers` does not list. Implementations
/// must not block the caller's thread (the visor's does its blocking HTTP on a detached task).
/// A key the resolver does not know is an error whose message says so.
public protocol PeerResolver: Sendable {
    /// Where the addresses come from, for error messages (e.g. "discovery http://host:9090").
    var name: String { get }
    func resolve(_ key: PublicKey) async throws -> ResolvedPeer
    /// Asks the rendezvous to have `key` open its NAT towards us; returns `key`'s current
    /// observed sudph address. Resolvers without a rendezvous throw.
    func punch(_ key: PublicKey) async throws -> HostPort
}

extension PeerResolver {
    public func punch(_ key: PublicKey) async throws -> HostPort {
        throw TransportError(.unreachable, "\(name) cannot punch")
    }
}

extension TransportManager {
    /// Brings up a transport to `remote` without a given address: from `transport.peers` when it
    /// has one (of `type`, or stcpr before sudph when `type` is nil), else through the resolver,
    /// trying each discovered address in turn: when the key has a sudph address (its live BIND),
    /// first a punch (`resolver.punch`, so a NAT in front of it lets our handshake in) and a sudph
    /// dial to the address it returns, then the stcpr addresses.
    /// A transport already up to `remote` (of `type`, if given) is returned as is, without a lookup.
    public func connect(remote: PublicKey, type: TransportType? = nil) async throws -> TransportInfo {
        guard remote != localKey else { throw TransportError(.badAddress, "cannot add a transport to ourselves") }
        if let up = lock.withLock({ entries.values.first { $0.remote == remote && (type == nil || $0.type == type) && $0.isUp } }) {
            up.markWanted()
            return up.info
        }
        if let peer = settings.peers[remote] {
            for t in type.map({ [$0] }) ?? [.stcpr, .sudph] {
                if let hp = peer.address(for: t) { return try await add(remote: remote, type: t, target: hp) }
            }
        }
        guard let resolver else {
            throw TransportError(.notFound, "no \(type.map { "\($0.rawValue) " } ?? "")address for \(remote.hex) in transport.peers, and no discovery to ask (transport.discovery is not set to an http:// URL): pass --addr HOST:PORT, add it to transport.peers, or set transport.discovery")
        }
        let found = try await resolver.resolve(remote)
        var candidates: [(TransportType, HostPort)] = []
        var failures: [String] = []
        if type == nil || type == .sudph, let s = found.sudph, settings.sudphPort > 0 {
            var target = s
            do {
                target = try await resolver.punch(remote)
            } catch {
                failures.append("punch: \(error)")   // still dialled: the peer may not be behind a NAT
            }
            candidates.append((.sudph, target))
        }
        if type == nil || type == .stcpr { candidates += found.stcpr.map { (.stcpr, $0) } }
        guard !candidates.isEmpty else {
            let have = "stcpr: \(found.stcpr.isEmpty ? "none" : found.stcpr.map(\.description).joined(separator: ", ")), sudph: \(found.sudph?.description ?? "none")"
            throw TransportError(.unreachable, "\(resolver.name) has no usable \(type.map { "\($0.rawValue) " } ?? "")address for \(remote.hex) (\(have)\(settings.sudphPort == 0 && found.sudph != nil ? "; sudph is disabled here" : ""))")
        }
        for (t, hp) in candidates {
            do {
                return try await add(remote: remote, type: t, target: hp)
            } catch {
                failures.append("\(t.rawValue) \(hp): \(error)")
            }
        }
        throw TransportError(.unreachable, "cannot reach \(remote.hex) at the addresses from \(resolver.name): \(failures.joined(separator: "; "))")
    }
}
