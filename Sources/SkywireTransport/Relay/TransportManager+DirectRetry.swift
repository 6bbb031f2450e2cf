import NIOConcurrencyHelpers
import NIOCore
import SkywireCrypto

/// One peer's background retry of a direct transport (`TransportManager.relayInUse`).
final class DirectRetryRun: Sendable {
    /// Uses of the relay path to the peer since the run started (streams our apps opened over it,
    /// the `connect` that fell back to it), the one that started the run included: the run makes
    /// at least one attempt.
    let opens = NIOLockedValueBox<UInt64>(1)
    let task = NIOLockedValueBox<Task<Void, Never>?>(nil)

    func cancel() { task.withLockedValue { $0?.cancel() } }
}

extension TransportManager {
    /// Longest one background direct attempt may take (punch, punched sudph, each stcpr address),
    /// after which it is abandoned like a timed-out `connect(within:)`.
    static let directAttemptLimit = TimeAmount.seconds(30)

    /// An app of ours uses the dmsg path to `remote` (a stream opened over it, or `connect` fell back
    /// to it): unless one runs already, starts retrying a direct transport in the background on
    /// `settings.directRetry` (`DirectRetryState`), so that new streams move to the direct path
    /// (`connection(to:)` prefers it) when one comes up, without user action; streams open over
    /// the relay stay there until they end. Nothing when the visor has no way to learn an address
    /// (no `transport.peers` entry, no resolver). Only our own use starts it: a stream a peer
    /// opens to us through a relay does not make us dial addresses it published.
    func relayInUse(_ remote: PublicKey) {
        guard settings.peers[remote] != nil || resolver != nil else { return }
        let run = DirectRetryRun()
        let existing: DirectRetryRun?? = lock.withLock {
            guard !stopped else { return .some(nil) }
            if let current = directRetries[remote] { return .some(current) }
            directRetries[remote] = run
            return .none
        }
        switch existing {
        case .some(let current?):
            current.opens.withLockedValue { $0 &+= 1 }
            return
        case .some(nil):
            return
        case .none:
            break
        }
        let schedule = settings.directRetry
        let task = Task { [weak self] in
            await self?.retryDirect(to: remote, run: run, schedule: schedule)
            self?.lock.withLock {
                if self?.directRetries[remote] === run { self?.directRetries[remote] = nil }
            }
        }
        run.task.withLockedValue { $0 = task }
    }

    /// The peers whose direct transport is being retried in the background (tests, `visor.info`).
    var directRetryPeers: [PublicKey] { lock.withLock { Array(directRetries.keys) } }

    /// What the retry looks at: `remote`'s transports now.
    func relayOnlyPeer(_ remote: PublicKey, opens: UInt64) -> RelayOnlyPeer {
        let all = lock.withLock { entries.to(remote) }
        var peer = RelayOnlyPeer(relayUp: false, directUp: false, relayStreams: 0, relayOpens: opens)
        for entry in all {
            guard let live = entry.liveConnection else { continue }
            if entry.type.isDirect {
                peer.directUp = true
            } else {
                peer.relayUp = true
                peer.relayStreams += live.stats.streams
            }
        }
        return peer
    }

    /// The retry loop: wait, look, attempt, until `DirectRetryState` says stop or the task is
    /// cancelled (`shutdown`).
    private func retryDirect(to remote: PublicKey, run: DirectRetryRun, schedule: DirectRetrySchedule) async {
        var state = DirectRetryState(schedule: schedule, relayOpens: 0)
        logger.debug("dmsg: retrying a direct transport in the background", metadata: ["pk": "\(remote.short)"])
        while !Task.isCancelled {
            let delay = DirectRetrySchedule.jittered(state.nextDelay)
            try? await Task.sleep(nanoseconds: UInt64(max(0, delay.nanoseconds)))
            guard !Task.isCancelled, !lock.withLock({ stopped }) else { return }
            switch state.look(at: relayOnlyPeer(remote, opens: run.opens.withLockedValue { $0 })) {
            case .stop(let reason):
                logger.debug("dmsg: background direct retry stopped: \(reason.rawValue)", metadata: ["pk": "\(remote.short)"])
                return
            case .attempt:
                do {
                    let info = try await Self.withDeadline(Self.directAttemptLimit, {
                        try await self.connectDirect(remote: remote, type: nil, progress: ConnectProgress())
                    }, timedOut: {
                        TransportError(.timeout, "no direct transport within \(Self.directAttemptLimit.nanoseconds / 1_000_000_000) s")
                    })
                    logger.info("dmsg: a direct transport came up; new streams take it, those on the relay stay until they end",
                                metadata: ["pk": "\(remote.hex)", "type": "\(info.type.rawValue)", "id": "\(info.id)"])
                    return
                } catch {
                    let text = (error as? DirectFailure)?.steps.joined(separator: "; ") ?? "\(error)"
                    logger.debug("dmsg: direct attempt \(state.attempts) failed: \(text)", metadata: ["pk": "\(remote.short)"])
                }
            }
        }
    }
}
