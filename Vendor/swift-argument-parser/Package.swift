// swift-tools-version:6.0
//===----------------------------------------------------------------------===//
//
// This source file is part of the Swift Argument Parser open source project
//
// Copyright (c) 2020 Apple Inc. and the Swift project authors
// Licensed under Apache License v2.0 with Runtime Library Exception
//
// See https://swift.org/LICENSE.txt for license information
//
//===----------------------------------------------------------------------===//

// Vendored swift-argument-parser 1.8.2, trimmed to the two library targets skywire builds
// (PATCHES.md): no plugins, examples, tools or tests.
import PackageDescription

let package = Package(
  name: "swift-argument-parser",
  products: [
    .library(
      name: "ArgumentParser",
      targets: ["ArgumentParser"]),
  ],
  dependencies: [],
  targets: [
    .target(
      name: "ArgumentParser",
      dependencies: ["ArgumentParserToolInfo"]),
    .target(
      name: "ArgumentParserToolInfo"),
  ]
)
