import XCTest
@testable import SkywireCrypto

final class SkywireCryptoSmokeTests: XCTestCase {
    func testModuleLoads() {
        XCTAssertTrue(true)
    }
}
