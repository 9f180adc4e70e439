// aigc info FILE: metadata and tensor table of a GGUF or safetensors file.
#include "cli/commands.h"
#include "core/error.h"

namespace aigc::cli {

void command_info_register(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show the metadata and tensor table of a GGUF or safetensors file");
  auto path = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  cmd->add_option("FILE", *path, "Model file (.gguf, .safetensors, or a sharded .safetensors.index.json)")->required();
  cmd->add_flag("--json", *json, "Print JSON instead of a table");
  cmd->callback([path, json]() {
    error_throw("not implemented yet", *path);
  });
}

}  // namespace aigc::cli
