// lull completion bash|zsh: a completion script generated from the commands
// and options `lull` declares, so it never falls behind them.
//
//   source <(lull completion bash)          # or into /etc/bash_completion.d/lull
//   source <(lull completion zsh)           # zsh, through bashcompinit

#include <map>
#include <sstream>

#include "src/cli/commands.hpp"

namespace lull::cli {

CLI::App* add_completion(CLI::App& app, completion_opts& o) {
  auto* c = app.add_subcommand("completion", "print a shell completion script (bash or zsh)");
  c->add_option("shell", o.shell, "bash or zsh")->required()->check(CLI::IsMember({"bash", "zsh"}));
  return c;
}

namespace {

/// Long and short names of the options of `app` that are not positional;
/// `with_value` those that take a value (a flag expects none: after it come
/// options again).
void option_words(const CLI::App& app, std::vector<std::string>& all,
                  std::vector<std::string>& with_value) {
  for (const auto* opt : app.get_options([](const CLI::Option* o) { return o->nonpositional(); })) {
    bool takes_value = opt->get_items_expected_max() > 0;
    // The first long name is offered; the others (lulld's spellings, such
    // as --broker-ca-file beside --ca-file) are still read and take values.
    auto& lnames = opt->get_lnames();
    for (std::size_t i = 0; i < lnames.size(); ++i) {
      if (i == 0)
        all.push_back("--" + lnames[i]);
      if (takes_value)
        with_value.push_back("--" + lnames[i]);
    }
    for (auto& s : opt->get_snames()) {
      all.push_back("-" + s);
      if (takes_value)
        with_value.push_back("-" + s);
    }
  }
}

std::string join(const std::vector<std::string>& words) {
  std::string out;
  for (auto& w : words)
    out += (out.empty() ? "" : " ") + w;
  return out;
}

// Values worth completing, by "command:option".
const std::map<std::string, std::string> known_values = {
  {"run:--class", "LOW NORMAL HIGH"},
  {"run:--priority", "LOW NORMAL HIGH"},
  {"submit:--class", "LOW NORMAL HIGH"},
  {"submit:--priority", "HIGH NORMAL LOW BACKGROUND"},
  {"jobs:--state", "queued leased running succeeded failed cancelled expired"},
  {"history:--group", "host quiet bus"},
};

} // namespace

std::string completion_script(const CLI::App& app, const std::string& shell) {
  std::vector<std::string> global, global_value;
  option_words(app, global, global_value);
  std::vector<std::string> names;
  std::ostringstream cases, value_opts;
  for (const auto* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    names.push_back(sub->get_name());
    std::vector<std::string> opts, with_value;
    option_words(*sub, opts, with_value);
    cases << "    " << sub->get_name() << ") opts=\"" << join(opts) << "\" ;;\n";
    if (!with_value.empty())
      value_opts << "    " << sub->get_name() << ") takes=\"" << join(with_value) << "\" ;;\n";
  }
  std::ostringstream s;
  if (shell == "zsh")
    s << "#compdef lull\n# zsh completion for lull (lull completion zsh), through bashcompinit\n"
         "autoload -U +X bashcompinit && bashcompinit\n";
  else
    s << "# bash completion for lull (lull completion bash)\n";
  s << "_lull_at_files() {\n"
       "  local f\n"
       "  COMPREPLY=()\n"
       "  while IFS= read -r f; do COMPREPLY+=(\"@$f\"); done < <(compgen -f -- \"$1\")\n"
       "}\n"
       "_lull() {\n"
       "  local cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n"
       "  local cmd=\"\" i after_dashes=0 opts=\"\" takes=\"\"\n"
       "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
       "    [[ ${COMP_WORDS[i]} == -- && -n $cmd ]] && after_dashes=$i && break\n"
       "    if [[ -z $cmd && \" " << join(names) << " \" == *\" ${COMP_WORDS[i]} \"* ]]; then\n"
       "      cmd=\"${COMP_WORDS[i]}\"\n"
       "    fi\n"
       "  done\n"
       "  if ((after_dashes)); then\n"
       "    # the command run under the lease, then its arguments\n"
       "    if ((COMP_CWORD == after_dashes + 1)); then\n"
       "      COMPREPLY=($(compgen -c -- \"$cur\"))\n"
       "    else\n"
       "      COMPREPLY=($(compgen -f -- \"$cur\"))\n"
       "    fi\n"
       "    return\n"
       "  fi\n"
       "  case \"$cmd\" in\n"
    << cases.str()
    << "  esac\n"
       "  case \"$cmd\" in\n"
    << value_opts.str()
    << "  esac\n"
       "  case \"$cmd:$prev\" in\n";
  for (auto& [key, values] : known_values)
    s << "    " << key << ") COMPREPLY=($(compgen -W \"" << values << "\" -- \"$cur\")); return ;;\n";
  // --payload @FILE: bash splits "@fi" into "@" and "fi" (@ is in
  // COMP_WORDBREAKS) yet replaces the whole "@fi", so every candidate keeps
  // its "@" whichever way the words arrive (zsh's bashcompinit does not split).
  s << "    *:--payload)\n"
       "      [[ $cur == @* ]] && _lull_at_files \"${cur#@}\"\n"
       "      return ;;\n"
       "    *:@)\n"
       "      if [[ ${COMP_WORDS[COMP_CWORD-2]} == --payload ]]; then\n"
       "        _lull_at_files \"$cur\"\n"
       "        return\n"
       "      fi ;;\n"
       "  esac\n"
       "  if [[ \" " << join(global_value) << " $takes \" == *\" $prev \"* ]]; then\n"
       "    COMPREPLY=()\n"
       "    return\n"
       "  fi\n"
       "  if [[ -z $cmd ]]; then\n"
       "    if [[ $cur == -* ]]; then\n"
       "      COMPREPLY=($(compgen -W \"" << join(global) << " --help --version\" -- \"$cur\"))\n"
       "    else\n"
       "      COMPREPLY=($(compgen -W \"" << join(names) << "\" -- \"$cur\"))\n"
       "    fi\n"
       "  elif [[ $cmd == completion ]]; then\n"
       "    COMPREPLY=($(compgen -W \"bash zsh\" -- \"$cur\"))\n"
       "  else\n"
       "    COMPREPLY=($(compgen -W \"$opts " << join(global) << " --help\" -- \"$cur\"))\n"
       "  fi\n"
       "}\n"
       "complete -F _lull lull\n";
  return s.str();
}

} // namespace lull::cli
