import Foundation

/// Models from a file: the same vocabulary as `LayerSpec`, written as JSON a person edits.
///
///     {
///       "name": "small-resnet",
///       "input": {"height": 32, "width": 32, "channels": 3},
///       "classes": 10,
///       "recipe": {"epochs": 60, "optimizer": "sgd", "lr": 0.1, "nesterov": true, "schedule": "cosine"},
///       "layers": [
///         {"conv": 16, "kernel": 3, "padding": 1, "bias": false}, "batchnorm", "relu",
///         {"repeat": 3, "layers": [
///           {"residual": [
///             {"conv": 16, "kernel": 3, "padding": 1, "bias": false}, "batchnorm", "relu",
///             {"conv": 16, "kernel": 3, "padding": 1, "bias": false}, "batchnorm"
///           ]},
///           "relu"
///         ]},
///         "globalavgpool", "flatten",
///         {"dense": 10}
///       ]
///     }
///
/// Parameterless layers are strings (batchnorm, relu, sigmoid, tanh, globalavgpool, flatten);
/// the others are objects keyed by the kind, whose value is the main number:
/// `{"conv": C, "kernel": K, "stride": 1, "padding": 0, "bias": true}`, `{"maxpool": K, "stride": K}`,
/// `{"avgpool": K, "stride": K}`, `{"dropout": RATE}`, `{"dense": N}`,
/// `{"residual": [BODY…], "shortcut": []}` (an empty shortcut is the identity) and
/// `{"repeat": N, "layers": […]}` (N copies in place). Optional fields show their defaults here.
/// `input` defaults to 32x32x3, `classes` to 10, `name` to the file's name and `recipe` to
/// `Recipe.adam`; a missing recipe field takes `Recipe.adam`'s or `OptimizerConfig`'s default
/// (the learning rate: 0.001 for adam, 0.01 for sgd, as `train --lr`). Recipe fields: epochs,
/// batch_size, optimizer ("sgd" or "adam"), lr, momentum, nesterov, weight_decay,
/// decay_all_parameters, beta1, beta2, epsilon, warmup_epochs, schedule ("constant", "cosine" or
/// `{"step": [30, 45], "factor": 0.1}`), label_smoothing, augment.
extension ModelSpec {
    /// Reads and validates a model file. Throws `ModelFileError`, whose description is one
    /// message naming the file and the line or field (`net.json:7:9: layers[2].conv: …`).
    public static func load(contentsOf path: String) throws -> ModelSpec {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ModelFileError(file: path, problem: "no such model file")
        }
        guard !isDirectory.boolValue else { throw ModelFileError(file: path, problem: "is a directory, not a model file") }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelFileError(file: path, problem: "cannot read the file (permissions?)")
        }
        return try parse(json: String(decoding: data, as: UTF8.self), file: path)
    }

    /// Parses and validates a model file's text; `file` names it in messages and, without a
    /// `"name"` field, gives the model its name (`nets/wide.json` → `wide`).
    public static func parse(json: String, file: String) throws -> ModelSpec {
        let root: JSONValue
        do {
            root = try JSONReader.parse(json)
        } catch {
            throw ModelFileError(file: file, at: error.at, problem: error.problem)
        }
        var reader = ModelFileReader(file: file)
        let spec = try reader.model(root)
        do {
            try spec.validate()
        } catch {
            throw reader.locate(error)
        }
        return spec
    }

    /// A built-in model by name, else a model file: a path ending in `.json` or containing '/'.
    public static func resolve(_ nameOrPath: String) throws -> ModelSpec {
        if let spec = named(nameOrPath) { return spec }
        if nameOrPath.hasSuffix(".json") || nameOrPath.contains("/") { return try load(contentsOf: nameOrPath) }
        throw ModelFileError(file: nil, problem: """
            unknown model '\(nameOrPath)' (built-in: \(all.map(\.name).joined(separator: ", ")); \
            or a model file: a path ending in .json)
            """)
    }
}

/// A model file that cannot be used: `description` is the whole message, file name first, then
/// the line and column when known, then the field path in `LayerPlan`'s notation
/// (`layers[3].residual[1]`, indexes into the list as written, inside a `repeat` too).
public struct ModelFileError: Error, CustomStringConvertible, Equatable {
    /// The file as named by the caller; nil when the name given was neither a model nor a file.
    public let file: String?
    public let line: Int?, column: Int?
    /// The field or layer, as `layers[3].residual[1]` or `recipe.optimizer`.
    public let path: String?
    public let problem: String

    public init(file: String?, line: Int? = nil, column: Int? = nil, path: String? = nil, problem: String) {
        self.file = file; self.line = line; self.column = column; self.path = path; self.problem = problem
    }

    init(file: String?, at: TextPosition?, path: String? = nil, problem: String) {
        self.init(file: file, line: at?.line, column: at?.column, path: path, problem: problem)
    }

    public var description: String {
        var where_: [String] = []
        if let file { where_.append([file, line.map(String.init), column.map(String.init)].compactMap { $0 }.joined(separator: ":")) }
        if let path { where_.append(path) }
        return (where_ + [problem]).joined(separator: ": ")
    }
}
