import NIOCore
import SkywireTransport

/// Records what an `AppStream` delivers to its delegate; touched on the stream's loop only.
public final class AppStreamRecorder: AppStreamDelegate {
    public var received: [UInt8] = []
    public var finished = false
    public var resetCode: AppStreamResetCode?
    public var writabilityChanges = 0

    public init() {}

    public func appStream(_ stream: AppStream, didReceive data: ByteBuffer) { received += data.readableBytesView }
    public func appStreamDidReceiveFinish(_ stream: AppStream) { finished = true }
    public func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) { resetCode = code }
    public func appStreamWritabilityChanged(_ stream: AppStream) { writabilityChanges += 1 }
}
