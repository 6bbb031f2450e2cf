import SkywireConfig
import SkywireCrypto
import SkywireVisor
import XCTest

final class AppArgumentCheckTests: XCTestCase {
    func testVPNArgumentsCheckedWithTheirPath() {
        let pk = KeyPair.generate().publicKey.hex
        let launcher = LauncherConfig(apps: [
            AppConfig(name: .vpnServer),                                   // no args, not started: skipped
            AppConfig(name: .vpnClient, args: ["-k", pk, "--lan", "eth1", "--bypass", "zz"], autoStart: true),
            AppConfig(name: .vpnClient, autoStart: true),                  // auto-started without -k
            AppConfig(name: .vpnServer, args: ["--secure=maybe"]),
            AppConfig(name: .skysocks, args: ["anything"]),
            AppConfig(name: .vpnClient, args: ["-k", pk, "--lan", "eth1", "--lan-subnet", "192.168.9.1/24"], autoStart: true),
            AppConfig(name: .skysocksClient, autoStart: true),             // auto-started without -k
        ])
        let problems = AppArgumentCheck.problems(launcher)
        XCTAssertEqual(problems.map(\.path), ["launcher.apps[1].args", "launcher.apps[2].args", "launcher.apps[3].args",
                                              "launcher.apps[4].args", "launcher.apps[6].args"])
        XCTAssertTrue(problems[0].message.hasPrefix("vpn-client: --bypass: \"zz\" is neither a MAC"), problems[0].message)
        XCTAssertTrue(problems[1].message.contains("needs -k PK"), problems[1].message)
        XCTAssertTrue(problems[2].message.contains("--secure takes true or false"), problems[2].message)
        XCTAssertTrue(problems[3].message.hasPrefix("skysocks: unexpected argument"), problems[3].message)
        XCTAssertTrue(problems[4].message.hasPrefix("skysocks-client: "), problems[4].message)
    }

    /// Closed by default (issue 16): `config check` names every app that refuses every key and
    /// every app open to every key; a malformed key is a problem, never "everyone".
    func testWhitelistsCheckedAndAccessNamed() {
        let pk = KeyPair.generate().publicKey.hex
        let launcher = LauncherConfig(apps: [
            AppConfig(name: .vpnServer, autoStart: true),                         // no whitelist
            AppConfig(name: .skysocks, args: ["--whitelist", ""]),                // empty whitelist
            AppConfig(name: .vpnServer, args: ["--whitelist", "any"]),
            AppConfig(name: .skysocks, args: ["--whitelist", pk], autoStart: true),
            AppConfig(name: .vpnServer, args: ["--whitelist", "nope,\(pk)"]),      // malformed
            AppConfig(name: .skysocks, args: ["--whitelist", "any,\(pk)"]),        // mixed
            AppConfig(name: .skysocks),                                            // not started, no args: skipped
        ])
        let problems = AppArgumentCheck.problems(launcher)
        XCTAssertEqual(problems.map(\.path), ["launcher.apps[4].args", "launcher.apps[5].args"])
        XCTAssertEqual(problems[0].message, "vpn-server: --whitelist: \"nope\" is not a visor public key (64 hex characters of an "
                       + "Ed25519 key); list keys, or \"any\" alone for every key")
        XCTAssertTrue(problems[1].message.hasPrefix("skysocks: --whitelist: \"any\" admits every key and cannot be combined"),
                      problems[1].message)
        let notices = AppArgumentCheck.accessNotices(launcher)
        XCTAssertEqual(notices.map(\.description), [
            "launcher.apps[0].args: vpn-server: whitelist empty: refuses every key; use --whitelist PK,... or --whitelist any",
            // apps[1] is closed and not auto-started: nothing to say (a board's opt-in pty entry).
            "launcher.apps[2].args: vpn-server: whitelist any: open to every visor key",
        ])
    }
}
