import ArgumentParser
import SkywireConfig
import SkywireDiscovery
import SkywireVisor
#if canImport(Glibc)
import Glibc
#endif

/// Options of `skywire cli vpn list` / `proxy list`: they ask the discovery service directly,
/// not the visor (docs/discovery.md).
struct DiscoveryListOptions: ParsableArguments {
    @Option(name: .customLong("discovery"), help: "Discovery URL, http://HOST:PORT (default: transport.discovery of --config).")
    var discovery: String?

    @Option(name: .customLong("config"), help: "Visor config whose transport.discovery names the service.")
    var config: String?

    @Option(name: [.customShort("c"), .customLong("country")], help: "Only servers in this country (ISO 3166-1 alpha-2, e.g. DE).")
    var country: String?

    @Option(name: .customLong("server-version"), help: "Only servers of this version.")
    var serverVersion: String?

    @Option(help: "Show at most this many servers (pages of \(DiscoveryAPI.maxPageEntries) are fetched until then), 1...100000.")
    var max: Int = DiscoveryListOptions.defaultMax

    @Option(name: .customLong("page-size"), help: .hidden)
    var pageSize: Int = DiscoveryAPI.maxPageEntries

    /// Entries shown by default: enough for any real listing, bounded against a flood of throw-away keys.
    static let defaultMax = 1000

    @Flag(help: "Add the servers' reported stats.") var stats = false
    @Flag(help: "Print JSON (an array of entries).") var json = false

    func validate() throws {
        guard (1...100_000).contains(max) else { throw ValidationError("--max \(max): must be 1...100000") }
        guard (1...DiscoveryAPI.maxPageEntries).contains(pageSize) else { throw ValidationError("--page-size: 1...\(DiscoveryAPI.maxPageEntries)") }
        if let country {
            do { try DiscoveryValidation.checkCountry(country) } catch { throw ValidationError("-c \(error.message)") }
        }
        if let serverVersion {
            do { try DiscoveryValidation.checkVersion(serverVersion) } catch { throw ValidationError("--server-version \(error.message)") }
        }
    }

    func url() throws -> DiscoveryURL {
        var text = discovery
        if text == nil, let config {
            do { text = try VisorConfig.load(path: config).transport.discovery } catch { throw ValidationError("\(config): \(error)") }
            if text?.isEmpty == true { throw ValidationError("\(config): transport.discovery is not set; pass --discovery URL") }
        }
        guard let text else { throw ValidationError("no discovery service: pass --discovery URL or --config with transport.discovery") }
        do { return try DiscoveryURL(text) } catch { throw ValidationError(error.message) }
    }

    func run(_ type: DiscoveryServiceType) throws {
        let u = try url()
        var query: [String] = []
        if let country { query.append("country=\(country)") }
        if let serverVersion { query.append("version=\(serverVersion)") }
        var entries: [ServiceEntry] = []
        var truncated = false
        do {
            // Pages sorted by key: each asks for what is still wanted, after the last key seen.
            var after: String? = nil
            repeat {
                let limit = Swift.min(pageSize, max - entries.count)
                let q = query + ["limit=\(limit)"] + (after.map { ["after=\($0)"] } ?? [])
                let path = "/v1/services/\(type.rawValue)"
                var (status, body) = try DiscoveryHTTPClient.exchange(u, method: "GET", target: path + "?" + q.joined(separator: "&"))
                if status == 400, after == nil, DiscoveryHTTP.errorMessage(body).hasPrefix("unknown query parameter \"limit\"") {
                    // A service from before paging: its one answer holds everything.
                    (status, body) = try DiscoveryHTTPClient.exchange(u, method: "GET", target: path + (query.isEmpty ? "" : "?" + query.joined(separator: "&")))
                }
                guard status == 200 else { throw DiscoveryError(status, DiscoveryHTTP.errorMessage(body)) }
                let page = try ServiceEntry.decodePage(body)
                entries += page.entries.prefix(max - entries.count)
                // A page that does not advance (an answer not sorted by key) ends the listing.
                guard let next = page.next, next > (after ?? ""), !page.entries.isEmpty else { after = nil; break }
                after = next
            } while entries.count < max
            truncated = after != nil
        } catch {
            printError("skywire cli \(type.rawValue) list: \((error as? DiscoveryError)?.message ?? "\(error)")")
            throw ExitCode(1)
        }
        if truncated {
            printError("skywire cli \(type.rawValue) list: showing the first \(max) servers by key; narrow with -c COUNTRY / --server-version or raise --max")
        }
        if json {
            print(JSONValueList(entries.map { e -> JSONValue in
                var v = e.json()
                if !stats, case .object(let m) = v { v = .object(m.filter { $0.name != "stats" }) }
                return v
            }))
            return
        }
        var header = ["PK", "COUNTRY", "VERSION", "LABEL"]
        if stats { header.append("STATS") }
        let rows = entries.map { e -> [String] in
            var row = [e.pk, e.registration.country, e.registration.version, e.registration.label ?? "-"]
            if stats {
                row.append(e.registration.stats.map { s in s.keys.sorted().map { "\($0)=\(s[$0]!)" }.joined(separator: " ") } ?? "-")
            }
            return row
        }
        Output.table(header, rows)
    }

    private func JSONValueList(_ items: [JSONValue]) -> String { JSONValue.array(items).compact() }

    private func printError(_ message: String) {
        var line = Array((message + "\n").utf8)
        _ = write(STDERR_FILENO, &line, line.count)
    }
}

extension VPNGroup {
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List VPN exits registered with the discovery service.",
            discussion: "Asks the discovery service (not the visor): --discovery URL, or transport.discovery of --config.")
        @OptionGroup var options: DiscoveryListOptions
        func run() throws { try options.run(.vpn) }
    }
}

extension ProxyGroup {
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List SOCKS5 proxies (skysocks) registered with the discovery service.",
            discussion: "Asks the discovery service (not the visor): --discovery URL, or transport.discovery of --config.")
        @OptionGroup var options: DiscoveryListOptions
        func run() throws { try options.run(.proxy) }
    }
}
