// pricer serve: the model behind HTTP (OpenAI-compatible completions and chat, the price API) and
// the web app (price a product, watch runs live, sweeps, evaluations, beat the model).
// SIGTERM or Ctrl-C stops taking requests, answers those in flight, then exits 0.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "cli/command.h"
#include "core/error.h"
#include "monitor/recorder.h"
#include "predict/model_pricer.h"
#include "serve/server.h"

namespace pricer::cli {
namespace {

struct ServeArgs {
  ModelPricerOptions model;
  serve::ServerOptions server;
  serve::EngineOptions engine;
  std::string readout = price_mode_name(kDefaultPriceMode);
  std::string chat_template = "auto";
};

// How chat messages become a prompt: the named format, or with "auto" the one the model's chat
// template writes (none: the model is a price model). A template not recognised leaves the
// server up for everything else; its chat requests are refused, naming the way out.
void resolve_chat(ServeArgs& a) {
  if (a.chat_template != "auto") {
    a.server.chat.format = serve::chat_format_from_name(a.chat_template);
    if (a.server.chat.format == serve::ChatFormat::Llama31) a.server.chat.today = "26 Jul 2024";
    return;
  }
  std::string jinja = serve::read_chat_template(a.model.tokenizer.empty() ? a.model.model : a.model.tokenizer);
  if (jinja.empty() && !a.model.tokenizer.empty()) jinja = serve::read_chat_template(a.model.model);
  if (jinja.empty()) return;
  if (const auto style = serve::detect_chat_style(jinja)) {
    a.server.chat = *style;
    std::fprintf(stderr, "chat: the model's template is %s\n", serve::chat_format_name(style->format));
  } else {
    a.server.chat_refusal =
        "the model's chat template is not one pricer can write (llama3, llama3.1, chatml, gemma, "
        "phi3); start the server with --chat-template NAME, or use /v1/completions";
    std::fprintf(stderr, "chat: %s\n", a.server.chat_refusal.c_str());
  }
}

// The id clients name the model by: the run's directory for a run's output
// ("runs/kettle/last/model.gguf" -> "kettle", ".../best/adapter" -> "kettle/best"), else the
// file's name.
std::string default_model_name(const ModelPricerOptions& m) {
  std::filesystem::path p = std::filesystem::path(m.adapter.empty() ? m.model : m.adapter).lexically_normal();
  if (!p.has_filename()) p = p.parent_path();
  auto generic = [](const std::string& n) { return n == "model.gguf" || n == "adapter.gguf" || n == "adapter"; };
  while (generic(p.filename().string()) && p.has_parent_path()) p = p.parent_path();
  const std::string name = p.filename().string();
  if ((name == "last" || name == "best") && p.has_parent_path() && !p.parent_path().filename().empty())
    return p.parent_path().filename().string() + (name == "best" ? "/best" : "");
  return name.empty() ? "pricer" : name;
}

// SIGTERM and SIGINT write their number to a pipe (all a handler may safely do, whichever thread
// it lands on); a watcher thread reads it and stops the server.
int g_signal_pipe[2] = {-1, -1};
extern "C" void on_stop_signal(int sig) {
  const unsigned char b = static_cast<unsigned char>(sig);
  [[maybe_unused]] const ssize_t n = ::write(g_signal_pipe[1], &b, 1);
}

int run_serve(ServeArgs& a) {
  a.server.readout = price_mode_from_name(a.readout);
  if (a.server.model_name.empty() && !a.model.model.empty()) a.server.model_name = default_model_name(a.model);
  require(::pipe(g_signal_pipe) == 0, "serve: cannot create a pipe");
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sa.sa_flags = SA_ONSTACK;  // the main thread's own signal stack (monitor/interrupt.h)
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  if (a.server.runs_db.empty()) a.server.runs_db = monitor::default_runs_db().string();
  // Without a model: the web app's dashboard alone.
  std::shared_ptr<serve::Engine> engine;
  if (!a.model.model.empty()) {
    resolve_chat(a);
    a.model.keep_distribution = true;  // the web app charts each price's distribution
    engine = std::make_shared<serve::Engine>(std::make_shared<ModelPricer>(a.model), a.engine);
  } else {
    a.server.model_name.clear();
  }
  serve::Server server(engine, a.server);
  const int port = server.bind();
  if (engine) {
    std::fprintf(stderr, "serving %s on http://%s:%d (web app at /, OpenAI API under /v1, price API at /v1/price)\n",
                 a.server.model_name.c_str(), a.server.host.c_str(), port);
  } else {
    std::fprintf(stderr, "serving the dashboard of %s on http://%s:%d (no model)\n", a.server.runs_db.c_str(),
                 a.server.host.c_str(), port);
  }
  std::thread watcher([&] {
    unsigned char sig = 0;
    while (::read(g_signal_pipe[0], &sig, 1) < 0 && errno == EINTR) {
    }
    if (sig == SIGTERM || sig == SIGINT) {
      std::fprintf(stderr, "serve: %s: finishing the requests in flight\n", sig == SIGTERM ? "SIGTERM" : "interrupt");
      server.stop();
    }
  });
  server.run();
  // run() returns once stopped; wake a watcher still waiting (a stop that came from elsewhere).
  const unsigned char zero = 0;
  [[maybe_unused]] const ssize_t n = ::write(g_signal_pipe[1], &zero, 1);
  watcher.join();
  engine.reset();
  std::fprintf(stderr, "serve: stopped\n");
  return 0;
}

const Registrar reg{
    "serve", "Serve a model over HTTP: OpenAI-compatible completions and chat, and a price API",
    [](CLI::App& sub) -> Runner {
      auto a = std::make_shared<ServeArgs>();
      ModelPricerOptions& m = a->model;
      sub.add_option("-m,--model", m.model,
                     "Model: GGUF, Hugging Face directory or pricer checkpoint (none: the dashboard alone)");
      sub.add_option("--adapter", m.adapter, "LoRA adapter: PEFT directory or GGUF LoRA");
      sub.add_option("--tokenizer", m.tokenizer, "Tokenizer (default: the model's)");
      sub.add_option("--base-dtype", m.base_dtype, "How the projections are held: nf4, q8_0, q4_0, bf16, f32")
          ->capture_default_str();
      sub.add_option("--compute-dtype", m.compute_dtype,
                     "Precision of the base's linears: bf16, f32, or q8_0 (bf16, with q8_0/q4_0 weights taking "
                     "8-bit activations and integer dot products, as llama.cpp)")
          ->capture_default_str();
      sub.add_option("--prompt-template", m.prompt_template, "Price prompt with {text} (default: the curate prompt)");
      sub.add_option("--batch", m.batch, "Price prompts per forward pass")
          ->capture_default_str()
          ->check(CLI::Range(1, 4096));
      sub.add_option("--greedy-tokens", m.greedy_max_tokens,
                     "Token budget of the greedy readout and of a price model's chat reply")
          ->capture_default_str()
          ->check(CLI::Range(1, 64));
      sub.add_option("--readout", a->readout, "Default price readout of /v1/price: median, expected, top3 or greedy")
          ->capture_default_str();
      auto& s = a->server;
      sub.add_option("--host", s.host, "Address to listen on")->capture_default_str();
      sub.add_option("--port", s.port, "Port (0 = any free port, printed)")
          ->capture_default_str()
          ->check(CLI::Range(0, 65535));
      sub.add_option("--model-name", s.model_name, "Model id clients send (default: the model's or adapter's name)");
      sub.add_option("--timeout", s.request_timeout_s, "Seconds a request may take, queueing included")
          ->capture_default_str()
          ->check(CLI::Range(0.1, 86400.0));
      sub.add_option("--max-body", s.max_body_bytes, "Largest request body in bytes (413 above)")
          ->capture_default_str()
          ->check(CLI::Range(1024, 1 << 30));
      sub.add_option("--runs-db", s.runs_db,
                     "Run database the web app shows (default runs/pricer.db or $PRICER_RUNS_DB)");
      sub.add_option("--game-data", s.game_data,
                     "Dataset (directory or JSON-lines file) for the \"Beat the model\" page");
      sub.add_option("--game-split", s.game_split, "Split of --game-data to play")->capture_default_str();
      sub.add_option("--game-out", s.game_out, "CSV keeping the guesses, as eval --human-import reads them")
          ->capture_default_str();
      sub.add_option("--chat-template", a->chat_template,
                     "How chat messages become a prompt: auto (the model's template; none = price the last user "
                     "message), none, llama3, llama3.1, chatml, gemma, phi3")
          ->capture_default_str();
      sub.add_option("--queue", a->engine.queue, "Requests waiting or running at most (503 above)")
          ->capture_default_str()
          ->check(CLI::Range(1, 100000));
      sub.add_flag("!--no-batching", a->engine.batching,
                   "One request per forward pass: no batching of waiting price requests, no shared "
                   "generation passes (docs/benchmarks.md)");
      sub.add_option("--max-active", a->engine.max_active, "Generations advancing together")
          ->capture_default_str()
          ->check(CLI::Range(1, 1024));
      return [a] { return run_serve(*a); };
    }};

}  // namespace
}  // namespace pricer::cli
