extension VisorConfig {
    /// The JSON tree of this config (member order does not matter: the writer sorts names).
    var jsonValue: JSONValue {
        func member(_ name: String, _ value: JSONValue) -> JSONValue.Member { .init(name: name, value: value) }
        func number(_ n: UInt16) -> JSONValue { .number(String(n)) }

        let peers: [JSONValue.Member] = transport.peers.map { key, addresses in
            var fields: [JSONValue.Member] = []
            if let a = addresses.stcpr { fields.append(member(Key.stcpr, .string(a.description))) }
            if let a = addresses.sudph { fields.append(member(Key.sudph, .string(a.description))) }
            return member(key.hex, .object(fields))
        }
        let apps: [JSONValue] = launcher.apps.map { app in
            .object([
                member(Key.name, .string(app.name.rawValue)),
                member(Key.args, .array(app.args.map { .string($0) })),
                member(Key.autoStart, .bool(app.autoStart)),
                member(Key.port, number(app.port)),
            ])
        }
        return .object([
            member(Key.version, .string(VisorConfig.formatVersion)),
            member(Key.sk, .string(keyPair.secretKeyHex)),
            member(Key.pk, .string(keyPair.publicKey.hex)),
            member(Key.transport, .object([
                member(Key.stcprPort, number(transport.stcprPort)),
                member(Key.sudphPort, number(transport.sudphPort)),
                member(Key.listenAddr, .string(transport.listenAddr)),
                member(Key.peers, .object(peers)),
                member(Key.discovery, .string(transport.discovery)),
            ] + (transport.country.isEmpty ? [] : [member(Key.country, .string(transport.country))])
              + (transport.publicAddr.map { [member(Key.publicAddr, .string($0.description))] } ?? [])
              + (dmsgServersJSON.map { [member(Key.dmsgServers, $0)] } ?? []))),
            member(Key.launcher, .object([member(Key.apps, .array(apps))])),
            member(Key.cliAddr, .string(cliAddr)),
            member(Key.logLevel, .string(logLevel.rawValue)),
            member(Key.stateDir, .string(stateDir)),
        ] + (ui.jsonValue.map { [member(Key.ui, $0)] } ?? []))
    }

    /// The file text: pretty-printed JSON, names sorted, two-space indent, trailing newline.
    /// The same config always gives byte-identical text.
    public func jsonText() -> String {
        jsonValue.prettyPrinted()
    }

    /// Every problem `load` would report for this config (empty when it is valid). Runs the
    /// written form through the same validator, so `write` can never produce a file that
    /// `load` rejects.
    public func validate() -> [FieldProblem] {
        do {
            _ = try VisorConfig.parse(jsonText())
            return []
        } catch {
            if case .invalid(let problems) = error { return problems }
            return [FieldProblem(path: "(root)", message: error.description)]
        }
    }
}
