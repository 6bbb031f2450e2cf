import XCTest
@testable import SkywireConfig

final class SkywireConfigSmokeTests: XCTestCase {
    func testModuleLoads() {
        XCTAssertTrue(true)
    }
}
