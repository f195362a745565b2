// The Python module `strata` (issue 10, item 5): strata.Policy(ckpt, handoff=None) over a trained
// robot checkpoint; see policy.h for its clock. Bindings sit above every layer of src/.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "policy.h"

namespace py = pybind11;
using strata::py::Policy;

namespace {

py::array_t<float> act(Policy& p, py::array_t<float, py::array::c_style | py::array::forcecast> obs) {
  if (obs.ndim() != 1 || obs.shape(0) != p.obs_dim())
    throw py::value_error("act: obs must be a 1-D array of " + std::to_string(p.obs_dim()) + " floats, got shape (" +
                          std::to_string(obs.ndim() ? obs.shape(0) : 0) + (obs.ndim() > 1 ? ", ...)" : ")"));
  py::array_t<float> out(std::vector<py::ssize_t>{py::ssize_t(p.action_dim())});
  p.act(obs.data(), out.mutable_data());
  return out;
}

// Nearest-rank percentile of the recorded latencies.
double percentile(std::vector<double> v, double q) {
  if (v.empty()) return std::nan("");
  const size_t k = size_t(std::clamp(std::ceil(q / 100.0 * double(v.size())) - 1, 0.0, double(v.size() - 1)));
  std::nth_element(v.begin(), v.begin() + ptrdiff_t(k), v.end());
  return v[k];
}

}  // namespace

PYBIND11_MODULE(strata, m) {
  m.doc() = "strata: a trained two-rate robot policy (planner + controller) from a strata checkpoint";
  py::register_exception<strata::InputError>(m, "InputError", PyExc_ValueError);
  py::class_<Policy>(m, "Policy")
      .def(py::init<const std::string&, const std::optional<std::string>&>(), py::arg("ckpt_path"),
           py::arg("handoff") = py::none(),
           "Load a robot checkpoint. handoff: None (the controller's action) or 'hold' | 'ensemble' | 'rtc' "
           "(the planner's action chunk through that hand-off policy).")
      .def("reset", &Policy::reset, "A new episode: empty caches, the policy's clock back to tick 0.")
      .def("act", &act, py::arg("obs"),
           "One control tick: obs float32[obs_dim] -> action float32[action_dim]. Runs the planner when its tick "
           "is due (every control_hz / planner_hz calls) and the controller on every call.")
      .def("latency_us", [](const Policy& p) { return p.latency_us(); }, "Per-call latency of act(), microseconds.")
      .def("latency_percentiles",
           [](const Policy& p) {
             py::dict d;
             d["p50"] = percentile(p.latency_us(), 50), d["p99"] = percentile(p.latency_us(), 99);
             d["max"] = p.latency_us().empty() ? std::nan("") : *std::max_element(p.latency_us().begin(), p.latency_us().end());
             d["n"] = p.latency_us().size();
             return d;
           },
           "p50 / p99 / max of the recorded per-call latency (microseconds) and the number of calls.")
      .def("clear_latency", &Policy::clear_latency)
      .def_property_readonly("obs_dim", &Policy::obs_dim)
      .def_property_readonly("action_dim", &Policy::action_dim)
      .def_property_readonly("planner_hz", &Policy::planner_hz)
      .def_property_readonly("control_hz", &Policy::control_hz)
      .def_property_readonly("ratio", &Policy::ratio)
      .def_property_readonly("planner_delay_ticks", &Policy::delay_ticks)
      .def_property_readonly("handoff", &Policy::handoff)
      .def_property_readonly("tick", &Policy::tick, "Calls since reset().")
      .def_property_readonly("planner_calls", &Policy::planner_calls, "Planner runs since reset().")
      .def_property_readonly("last_planned", &Policy::last_planned, "Whether the last act() ran the planner.");
}
