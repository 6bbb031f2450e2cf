import NIOConcurrencyHelpers
import NIOCore
import SkywireConfig
import SkywireCrypto

/// Addresses a resolver (the discovery service, docs/discovery.md) knows for a key.
public struct ResolvedPeer: Sendable, Equatable {
    public var stcpr: [HostPort]
    /// The key's observed sudph address (its live BIND), if any.
    public var sudph: HostPort?
    /// The dmsg relay servers the key is reachable through (its entry's `dmsg`), if any.
    public var dmsg: [PublicKey]

    public init(stcpr: [HostPort], sudph: HostPort?, dmsg: [PublicKey] = []) {
        self.stcpr = stcpr
        self.sudph = sudph
        self.dmsg = dmsg
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
    /// `connect`, bounded: when no transport is up within `seconds` (resolving, punching and every
    /// dial together), throws a `.timeout` error naming the limit and the step in progress. The
    /// abandoned attempt is cancelled (its dial entries are shut down and removed); nothing else
    /// is touched. A transport already up is returned at once.
    public func connect(remote: PublicKey, type: TransportType? = nil, within seconds: Int64) async throws -> TransportInfo {
        guard seconds > 0 else { throw TransportError(.badAddress, "timeout must be at least 1 s") }
        let progress = ConnectProgress()
        return try await Self.withDeadline(.seconds(seconds), {
            try await self.connect(remote: remote, type: type, progress: progress)
        }, timedOut: {
            TransportError(.timeout, "no transport to \(remote.hex) within the timeout of \(seconds) s (\(progress.current)); raise it with -t SECONDS")
        })
    }

    /// Runs `operation` and returns its result, unless `limit` passes first: then `operation` is
    /// cancelled (not awaited) and `timedOut()` is thrown.
    static func withDeadline<T: Sendable>(_ limit: TimeAmount, _ operation: @escaping @Sendable () async throws -> T,
                                          timedOut: @escaping @Sendable () -> Error) async throws -> T {
        let pending = NIOLockedValueBox<CheckedContinuation<T, Error>?>(nil)
        let take: @Sendable () -> CheckedContinuation<T, Error>? = {
            pending.withLockedValue { c in defer { c = nil }; return c }
        }
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
            pending.withLockedValue { $0 = continuation }
            let work = Task {
                let result: Result<T, Error>
                do { result = .success(try await operation()) } catch { result = .failure(error) }
                take()?.resume(with: result)
            }
            Task {
                try? await Task.sleep(nanoseconds: UInt64(max(0, limit.nanoseconds)))
                guard let c = take() else { return }
                work.cancel()
                c.resume(throwing: timedOut())
            }
        }
    }

    /// Brings up a transport to `remote` without a given address: from `transport.peers` when it
    /// has one (of `type`, or stcpr before sudph when `type` is nil), else through the resolver,
    /// trying each discovered address in turn: when the key has a sudph address (its live BIND),
    /// first a punch (`resolver.punch`, so a NAT in front of it lets our handshake in) and a sudph
    /// dial to the address it returns (resending every 250 ms for 5 s:
    /// `SudphHandshakeSchedule.punched`), then the stcpr addresses; when every direct step fails
    /// and relay servers are configured, a dmsg transport through them (the error then names
    /// each step). `type` `.dmsg` goes to the relays at once.
    /// A transport already up to `remote` (of `type`, if given) is returned as is, without a lookup.
    public func connect(remote: PublicKey, type: TransportType? = nil) async throws -> TransportInfo {
        try await connect(remote: remote, type: type, progress: ConnectProgress())
    }

    func connect(remote: PublicKey, type: TransportType?, progress: ConnectProgress) async throws -> TransportInfo {
        guard remote != localKey else { throw TransportError(.badAddress, "cannot add a transport to ourselves") }
        if let up = lock.withLock({ entries.to(remote).first { (type == nil || $0.type == type) && $0.isUp } }) {
            up.markWanted()
            return up.info
        }
        if type == .dmsg { return try await connectThroughRelay(remote, progress: progress, failures: []) }
        // Without a type, dmsg is the last step: each direct step that fails is named in its error.
        let relayLast = type == nil && lock.withLock({ relayPool }) != nil
        do {
            return try await connectDirect(remote: remote, type: type, progress: progress)
        } catch let error as DirectFailure where relayLast {
            return try await connectThroughRelay(remote, progress: progress, failures: error.steps)
        } catch let error as DirectFailure {
            throw error.error
        }
    }

    /// The direct steps of `connect` failed: `steps` names each, `error` is what to throw when no
    /// relay step follows.
    struct DirectFailure: Error {
        var steps: [String]
        var error: any Error

        /// `error` as a failed step, unless it is the caller's cancellation (passed through).
        static func step(_ name: String, _ error: any Error) -> any Error {
            error is CancellationError ? error : DirectFailure(steps: ["\(name): \(error)"], error: error)
        }
    }

    /// `connect`'s last step: a dmsg transport through the relay sessions.
    private func connectThroughRelay(_ remote: PublicKey, progress: ConnectProgress, failures: [String]) async throws -> TransportInfo {
        try Task.checkCancellation()
        progress.set("opening a dmsg stream through a relay\(failures.isEmpty ? "" : "; before: " + failures.joined(separator: "; "))")
        do {
            let info = try await add(remote: remote, type: .dmsg, target: nil)
            // The relay is the fallback: a direct transport is retried in the background.
            if !failures.isEmpty { relayInUse(remote) }
            return info
        } catch {
            guard !failures.isEmpty else { throw error }
            throw TransportError(.unreachable, "cannot reach \(remote.hex): \((failures + ["dmsg: \(error)"]).joined(separator: "; "))")
        }
    }

    /// The direct steps (punched sudph, then stcpr; the peers table before discovery); throws a
    /// `DirectFailure`. Also the background retry's attempt (`relayInUse`).
    func connectDirect(remote: PublicKey, type: TransportType?, progress: ConnectProgress) async throws -> TransportInfo {
        var failures: [String] = []
        if let peer = settings.peers[remote] {
            for t in type.map({ [$0] }) ?? [.stcpr, .sudph] {
                if let hp = peer.address(for: t) {
                    progress.set("dialling \(t.rawValue) \(hp) from transport.peers")
                    do {
                        return try await add(remote: remote, type: t, target: hp)
                    } catch {
                        throw DirectFailure.step("\(t.rawValue) \(hp) (transport.peers)", error)
                    }
                }
            }
        }
        guard let resolver else {
            throw DirectFailure(steps: ["direct: no address in transport.peers and no discovery to ask"], error: TransportError(.notFound, "no \(type.map { "\($0.rawValue) " } ?? "")address for \(remote.hex) in transport.peers, and no discovery to ask (transport.discovery is not set to an http:// URL): pass --addr HOST:PORT, add it to transport.peers, or set transport.discovery"))
        }
        progress.set("asking \(resolver.name) for its addresses")
        let found: ResolvedPeer
        do {
            found = try await resolver.resolve(remote)
        } catch {
            throw DirectFailure.step(resolver.name, error)
        }
        var candidates: [(type: TransportType, address: HostPort, punched: Bool)] = []
        if type == nil || type == .sudph, let s = found.sudph, settings.sudphPort > 0 {
            var target = s
            var punched = false
            do {
                try Task.checkCancellation()
                progress.set("asking \(resolver.name) to punch")
                target = try await resolver.punch(remote)
                punched = true
            } catch {
                try Task.checkCancellation()
                failures.append("punch: \(error)")   // still dialled: the peer may not be behind a NAT
            }
            candidates.append((.sudph, target, punched))
        }
        if type == nil || type == .stcpr { candidates += found.stcpr.map { (.stcpr, $0, false) } }
        guard !candidates.isEmpty else {
            let have = "stcpr: \(found.stcpr.isEmpty ? "none" : found.stcpr.map(\.description).joined(separator: ", ")), sudph: \(found.sudph?.description ?? "none")"
            let error = TransportError(.unreachable, "\(resolver.name) has no usable \(type.map { "\($0.rawValue) " } ?? "")address for \(remote.hex) (\(have)\(settings.sudphPort == 0 && found.sudph != nil ? "; sudph is disabled here" : ""))")
            throw DirectFailure(steps: ["direct: \(resolver.name) has no usable address (\(have))"], error: error)
        }
        for (t, hp, punched) in candidates {
            try Task.checkCancellation()
            progress.set("dialling \(t.rawValue) \(hp)\(punched ? " after a punch" : "")\(failures.isEmpty ? "" : "; before: " + failures.joined(separator: "; "))")
            do {
                return try await add(remote: remote, type: t, target: hp, punched: punched)
            } catch {
                try Task.checkCancellation()
                failures.append("\(t.rawValue) \(hp): \(error)")
            }
        }
        throw DirectFailure(steps: failures, error: TransportError(.unreachable, "cannot reach \(remote.hex) at the addresses from \(resolver.name): \(failures.joined(separator: "; "))"))
    }
}

/// What a `connect` is doing right now, for the timeout message.
final class ConnectProgress: Sendable {
    private let step = NIOLockedValueBox("starting")
    var current: String { step.withLockedValue { $0 } }
    func set(_ s: String) { step.withLockedValue { $0 = s } }
}
