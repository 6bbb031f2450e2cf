import Logging
import NIOConcurrencyHelpers
import NIOCore
import SkywireConfig
import SkywireCrypto
import SkywireSocks
import SkywireTransport
import XCTest
@testable import SkywireVPN
@testable import SkywireVisor

/// An app whose start fails with a fixed error, as a VPN client refused by its server does.
private final class RefusedApp: VisorApp {
    let error: Error
    init(error: Error) { self.error = error }
    func start() async throws { throw error }
    func stop() async {}
    func status() -> AppStatusReport { AppStatusReport() }
}

/// The typed control path (issue 17): options built from a request's parameters, errors with a
/// code from where they arise to the CLI's exit status, no message text inspected on the way.
final class ControlTypedErrorTests: XCTestCase {
    private let server = KeyPair.generate().publicKey

    /// A visor (not started: no listeners) whose `vpn-client` fails to start with `error`.
    private func visor(startError: Error, starts: NIOLockedValueBox<[AppOptions]>) -> Visor {
        let kp = KeyPair.generate()
        let settings = TransportSettings(identity: kp, listenHost: "127.0.0.1", stcprPort: 0, sudphPort: 0, peers: [:])
        let options = VisorOptions(transport: settings,
                                   apps: [AppSpec(name: AppName.vpnClient.rawValue, args: [], autoStart: false, port: 43)],
                                   controlSocket: "/nonexistent/cli.sock", logLevel: .critical, stateDirectory: "/nonexistent")
        let factory = AppFactory(parse: { try AppOptions(app: AppName.vpnClient.rawValue, arguments: $0) }) { _, options in
            starts.withLockedValue { $0.append(options) }
            guard case .vpnClient = options else { throw AppError(.invalidArguments, "not vpn-client options") }
            return RefusedApp(error: startError)
        }
        return Visor(options: options, logger: Logger(label: "test"), factories: [AppName.vpnClient.rawValue: factory])
    }

    private func call(_ v: Visor, _ method: String, _ params: [String: ControlValue]) async -> ControlErrorBody? {
        await v.handle(ControlRequest(method: method, params: params)).error
    }

    func testServerRefusalIsForbiddenByKindNotByText() {
        // The kind decides; the text does not (a message that merely mentions it stays `failed`).
        XCTAssertEqual(VPNClientVisorApp.code(of: VPNError(.forbidden, "the whitelist has no room for you")), .forbidden)
        XCTAssertEqual(VPNClientVisorApp.code(of: VPNError("forbidden: spelled like a refusal")), .failed)
        XCTAssertEqual(VPNClientVisorApp.code(of: VPNError(.refused, "the server refused: pool exhausted")), .failed)
        XCTAssertFalse(VPNClient.isTransient(VPNError(.forbidden, "x")))
        XCTAssertFalse(VPNClient.isTransient(VPNError(.refused, "x")))
        XCTAssertTrue(VPNClient.isTransient(VPNError("forbidden: spelled like a refusal")))
        XCTAssertTrue(VPNClient.isTransient(TransportError(.unreachable, "no route")))
    }

    func testCodesMapToControlCodesAndExitStatuses() {
        let expected: [(AppError.Code, ControlError.Code, Int32)] = [
            (.invalidArguments, .badRequest, 2), (.forbidden, .forbidden, 1), (.notFound, .notFound, 1),
            (.conflict, .conflict, 1), (.failed, .failed, 1),
        ]
        for (app, control, status) in expected {
            let e = ControlError(AppError(app, "m"))
            XCTAssertEqual(e.code, control, "\(app)")
            XCTAssertEqual(e.exitStatus, status, "\(app)")
            XCTAssertEqual(e.message, "m")
        }
        for code in [ControlError.Code.unavailable, .timeout] { XCTAssertEqual(ControlError(code, "m").exitStatus, 1) }
    }

    func testRefusedStartAnswersForbiddenOnTheControlSocket() async throws {
        let starts = NIOLockedValueBox<[AppOptions]>([])
        let refusal = VPNError(.forbidden, "the exit's whitelist does not list this visor")
        let v = visor(startError: AppError(VPNClientVisorApp.code(of: refusal), "vpn-client: \(refusal)"), starts: starts)
        let error = await call(v, "apps.start", ["name": "vpn-client", "args": ["-k", .string(server.hex), "--killswitch"]])
        XCTAssertEqual(error?.code, ControlError.Code.forbidden.rawValue)
        // What the CLI makes of that line: code `forbidden`, exit status 1.
        let line = try ControlCodec.encodeLine(ControlResponse(id: 1, error: ControlError(.forbidden, error?.message ?? "")))
        let decoded = try ControlCodec.decode(ControlResponse.self, from: Array(line.dropLast()))
        let code = try XCTUnwrap(decoded.error.flatMap { ControlError.Code(rawValue: $0.code) })
        XCTAssertEqual(ControlError(code, "").exitStatus, 1)
        // The app got typed options: parsed once, from the request's `args`.
        guard case .vpnClient(let a)? = starts.withLockedValue({ $0 }).first else { return XCTFail("no typed start") }
        XCTAssertTrue(a.killSwitch)
        XCTAssertEqual(a.server, server)
        let row = v.apps.snapshot().first
        XCTAssertEqual(row?["status"]?.stringValue, "failed")
        await v.shutdown()
    }

    func testBadVPNStartParametersAreBadRequestBeforeAnyDial() async throws {
        let starts = NIOLockedValueBox<[AppOptions]>([])
        let v = visor(startError: AppError("unused"), starts: starts)
        for params: [String: ControlValue] in [
            ["pk": .string(server.hex), "dns": "not-an-address"],
            ["pk": .string(server.hex), "bypass": "192.168.50.7"],  // gateway flag without --lan
            ["pk": .string(server.hex), "lan": "eth0", "lan_subnet": "10.0.0.0/8"],  // network address
            ["pk": .string(server.hex), "killswitch": "yes"],
        ] {
            let error = await call(v, "vpn.start", params)
            XCTAssertEqual(error?.code, ControlError.Code.badRequest.rawValue, "\(params): \(String(describing: error))")
        }
        XCTAssertTrue(starts.withLockedValue { $0 }.isEmpty, "nothing started")
        XCTAssertEqual(v.transports.list().count, 0, "nothing dialled")
        // Bad `args` for apps.start: bad_request (exit 2), the app marked failed, not started.
        let error = await call(v, "apps.start", ["name": "vpn-client", "args": ["--killswitch"]])
        XCTAssertEqual(error?.code, ControlError.Code.badRequest.rawValue)
        XCTAssertTrue(error?.message.hasPrefix("vpn-client: ") ?? false)
        // An app not in the config: not_found.
        let missing = await call(v, "apps.start", ["name": "skysocks"])
        XCTAssertEqual(missing?.code, ControlError.Code.notFound.rawValue)
        await v.shutdown()
    }

    func testVPNStartParametersBecomeTypedOptions() throws {
        let a = try Visor.vpnClientArguments(server: server, [
            "killswitch": true, "dns": "192.0.2.53,192.0.2.54", "lan": "eth1", "lan_subnet": "192.168.60.1/24",
            "bypass": "aa:BB:cc:dd:ee:ff,192.168.60.9", "uplink": "eth0", "dhcp_range": "192.168.60.100-192.168.60.150",
        ])
        XCTAssertTrue(a.killSwitch)
        XCTAssertEqual(a.dns.map(\.description), ["192.0.2.53", "192.0.2.54"])
        XCTAssertEqual(a.gateway?.lan, "eth1")
        XCTAssertEqual(a.gateway?.bypassMACs, ["aa:bb:cc:dd:ee:ff"])
        XCTAssertEqual(a.gateway?.dhcpFirst.description, "192.168.60.100")
        // The argument form `apps ls` shows parses back to the same options.
        XCTAssertEqual(try VPNClientArguments(parsing: a.arguments), a)
        XCTAssertEqual(try VPNClientArguments(parsing: VPNClientArguments(server: server).arguments), VPNClientArguments(server: server))
    }

    func testServerAndProxyOptionsRoundTripThroughTheirArgumentForm() throws {
        let other = KeyPair.generate().publicKey
        for s in [try VPNServerArguments(whitelist: ["\(server.hex),\(other.hex)"], secure: false, netifc: "eth0", dns: "192.0.2.1"),
                  try VPNServerArguments(whitelist: ["any"]), try VPNServerArguments(whitelist: [])] {
            XCTAssertEqual(try VPNServerArguments(parsing: s.arguments), s, "\(s.arguments)")
        }
        XCTAssertThrowsError(try VPNServerArguments(whitelist: ["any"], netifc: "lo"))
        for addr in [nil, "127.0.0.1:1081", "[::1]:1090"] {
            let o = try SkysocksClientOptions(server: server.hex, addr: addr)
            let back = try SkysocksClientOptions.parse(o.arguments)
            XCTAssertEqual(back.serverKeyHex, o.serverKeyHex)
            XCTAssertEqual(back.listenHost, o.listenHost)
            XCTAssertEqual(back.listenPort, o.listenPort)
        }
        XCTAssertThrowsError(try SkysocksClientOptions(server: "nope"))
        XCTAssertThrowsError(try SkysocksClientOptions(server: server.hex, addr: "example.com:1080"))
    }
}
