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
            AppConfig(name: .skysocks, args: ["anything"]),                // not checked here
            AppConfig(name: .vpnClient, args: ["-k", pk, "--lan", "eth1", "--lan-subnet", "192.168.9.1/24"], autoStart: true),
        ])
        let problems = AppArgumentCheck.problems(launcher)
        XCTAssertEqual(problems.map(\.path), ["launcher.apps[1].args", "launcher.apps[2].args", "launcher.apps[3].args"])
        XCTAssertTrue(problems[0].message.hasPrefix("vpn-client: --bypass: \"zz\" is neither a MAC"), problems[0].message)
        XCTAssertTrue(problems[1].message.contains("needs -k PK"), problems[1].message)
        XCTAssertTrue(problems[2].message.contains("--secure takes true or false"), problems[2].message)
    }
}
