import SkywireSystem
import SkywireTransport

extension Visor {
    /// Starts the uplink watcher (docs/architecture.md, "Network changes"); without netlink the
    /// visor runs on, without following changes (logged).
    func startFollowingUplink() async {
        let box = VisorBox()
        box.visor = self
        do {
            let watcher = try await BlockingPool.shared.run {
                try UplinkWatcher { change in
                    guard let visor = box.visor else { return }
                    visor.uplinkWork.withLockedValue { previous in
                        let before = previous
                        previous = Task { await before?.value; await visor.uplinkChanged(change) }
                    }
                }
            }
            uplinkWatcher.withLockedValue { $0 = watcher }
            logger.info("following network changes", metadata: ["uplink": "\(watcher.initial)"])
        } catch {
            logger.warning("not following network changes: \(error)")
        }
    }

    func stopFollowingUplink() async {
        guard let watcher = uplinkWatcher.withLockedValue({ w -> UplinkWatcher? in defer { w = nil }; return w }) else { return }
        await BlockingPool.shared.runOrInline { watcher.stop() }
        await uplinkWork.withLockedValue { $0 }?.value
    }

    /// One settled change: apps move what they copied from the old uplink first (the VPN
    /// client's host route to the exit, so that redials to it leave by the new one), then the
    /// transports redial or probe, then the discovery entry is refreshed. One info line says
    /// what was done.
    func uplinkChanged(_ change: UplinkChange) async {
        var done: [String] = []
        if change.isOffline {
            logger.info("network change: no usable uplink; waiting for one", metadata: ["change": "\(change)"])
            return
        }
        if change.asks(.moveRoutes) { done += await apps.uplinkChanged(change) }
        let r = transports.uplinkChanged(change)
        if r.redialled > 0 { done.append("redialled \(r.redialled) transport(s) in backoff") }
        if r.probed > 0 {
            done.append(change.vanished.isEmpty ? "probed \(r.probed) transport(s)"
                                                : "probed \(r.probed) transport(s), those bound to a vanished address closed and redialled")
        }
        if r.rebind { done.append("sudph BIND sent again") }
        if change.asks(.refreshDiscovery), let registrar {
            registrar.refreshNow()
            done.append("discovery entry refreshed")
        }
        logger.info("network change: \(done.isEmpty ? "nothing to do" : done.joined(separator: "; "))",
                    metadata: ["change": "\(change)"])
    }
}
