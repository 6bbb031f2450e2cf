import SkywireConfig
import SkywireCrypto
import SkywireSystem

/// The relay's key file: `{"public_key": "64 hex", "secret_key": "128 hex"}`, created with mode
/// 0600 (and its directory 0700) when missing; a file that does not parse or whose secret key
/// does not match its public key is an error, never replaced.
enum DmsgKeyFile {
    struct Problem: Error, CustomStringConvertible {
        let description: String
    }

    static func loadOrCreate(_ path: String) throws -> KeyPair {
        if let bytes = try FileIO.read(path) {
            guard case .object(let members) = try? JSONParser.parse(bytes),
                  case .string(let pk)? = members.first(where: { $0.name == "public_key" })?.value,
                  case .string(let sk)? = members.first(where: { $0.name == "secret_key" })?.value else {
                throw Problem(description: "\(path): expected {\"public_key\": \"…\", \"secret_key\": \"…\"}")
            }
            do { return try KeyPair(secretKeyHex: sk, publicKey: PublicKey(hex: pk)) } catch {
                throw Problem(description: "\(path): \(error)")
            }
        }
        let keyPair = KeyPair.generate()
        if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
            try FileIO.makeDirectories(String(path[..<slash]), mode: 0o700)
        }
        let text = JSONValue.object([.init(name: "public_key", value: .string(keyPair.publicKey.hex)),
                                     .init(name: "secret_key", value: .string(HexCoding.encode(keyPair.secretKey)))]).prettyPrinted()
        try FileIO.overwrite(path, Array((text + "\n").utf8), mode: 0o600)
        return keyPair
    }
}
