#pragma once
// Strict loading of the experiment config (schema and defaults: models/config.h) from YAML, with
// Hydra-style command-line overrides. Every error is an InputError that names where the value came
// from ("a.yaml:12" or "command-line override 'model.d_model=100'"), the key, the bad value and what
// would be accepted (valid keys + a "did you mean", allowed values, the other key of a shape clash).
//
// YAML layout: sections model / train / optim / data, nested model.attention / model.mamba /
// model.mlp / model.moe; keys are the struct field names. A key absent from the file keeps its
// default. Override grammar (Hydra basic):
//   a.b=v     set a schema key            +a.b=v   add a schema key the config does not set yet
//   ++a.b=v   set or add                  ~a.b     remove a key (or a whole section) from the file,
//   ~a.b=v    remove it only if it is v             so it goes back to its default
// Values are YAML scalars; a string key takes its text as written (M*-, a path with spaces) unless
// it is quoted ('...' or "..."). Overrides apply left to right.
//
// After parsing, resolve(cfg.model) fills the derived sizes, then the config is validated:
// enumerations, positive sizes and ranges always; shape checks that tie a block's sizes to
// d_model (heads | d_model, Mamba-2 head_dim | expand * d_model) only for blocks the pattern uses.
#include <string>
#include <vector>

#include "core/error.h"  // InputError, what every function here throws
#include "models/config.h"

namespace strata {

// Reads `path`; throws InputError "config file 'x.yaml' not found" when it does not exist.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});

// `source_name` stands for the file in messages and becomes cfg.source_path.
Config parse_config(const std::string& yaml_text, const std::string& source_name,
                    const std::vector<std::string>& overrides = {});

// The full resolved config, every key written: parse_config(to_yaml(c), ...) reproduces c exactly
// (floats are written in their shortest round-trip form). source_path is not part of it.
std::string to_yaml(const Config& c);

// Keys whose values differ, as "key: a vs b" (source_path is ignored); empty means equal.
std::vector<std::string> config_diff(const Config& a, const Config& b);

// Every key with its type, default and meaning (for `strata train --help-config`).
std::string config_help();

// The schema as data, in to_yaml order (for tests and tools).
struct ConfigKey {
  std::string key;                   // "model.attention.heads"
  std::string type;                  // integer | number | boolean | string
  std::string default_value;         // as written in YAML
  std::string help;
  std::vector<std::string> allowed;  // for enumerations; empty otherwise
};
std::vector<ConfigKey> config_schema();

}  // namespace strata
