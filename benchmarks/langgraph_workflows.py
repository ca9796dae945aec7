"""The README's "Workflows" comparison: each workflow of graphs/ ported to LangGraph's Graph API,
in the style of LangGraph's own workflow guide, runnable offline (a stand-in `llm`).

    python -m benchmarks.langgraph_workflows     # runs every port, prints its line count

Lines are counted the same way for both sides: code lines of the workflow's definition and
invocation (no blank lines, comments, docstrings, imports, or model/agent setup).
"""

import inspect
import io
import operator
import sys
import tokenize
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send


def llm(prompt: str) -> str:
    """Offline stand-in for a model call."""
    return f"answer to: {prompt}"


def llm_structured(kind: str, prompt: str) -> dict[str, Any]:
    """Offline stand-in for a structured-output call."""
    if kind == "subjects":
        return {"items": ["mice", "yarn", "boxes"]}
    if kind == "route":
        return {"kind": "joke" if "joke" in prompt else "poem"}
    if kind == "grade":
        return {"score": 9, "feedback": "sharper"}
    return {"sections": [{"title": "a", "brief": "b"}, {"title": "c", "brief": "d"}]}


def map_reduce(topic: str) -> str:
    class State(TypedDict):
        topic: str
        subjects: list[str]
        jokes: Annotated[list[str], operator.add]
        best: str

    class JokeState(TypedDict):
        subject: str
        topic: str

    def plan(state: State) -> dict[str, Any]:
        return {"subjects": llm_structured("subjects", f"Subjects about {state['topic']}")["items"]}

    def fan_out(state: State) -> list[Send]:
        return [Send("joke", {"subject": s, "topic": state["topic"]}) for s in state["subjects"]]

    def joke(state: JokeState) -> dict[str, Any]:
        return {"jokes": [llm(f"A joke about {state['subject']} (topic: {state['topic']})")]}

    def best(state: State) -> dict[str, Any]:
        return {"best": max(state["jokes"], key=len)}

    builder = StateGraph(State)
    builder.add_node("plan", plan)
    builder.add_node("joke", joke)
    builder.add_node("best", best)
    builder.add_edge(START, "plan")
    builder.add_conditional_edges("plan", fan_out, ["joke"])
    builder.add_edge("joke", "best")
    builder.add_edge("best", END)
    return builder.compile().invoke({"topic": topic})["best"]


def routing(request: str) -> str:
    class State(TypedDict):
        request: str
        kind: str
        answer: str

    def route(state: State) -> dict[str, Any]:
        return {"kind": llm_structured("route", state["request"])["kind"]}

    def poem(state: State) -> dict[str, Any]:
        return {"answer": llm(f"Write a poem: {state['request']}")}

    def joke(state: State) -> dict[str, Any]:
        return {"answer": llm(f"Write a joke: {state['request']}")}

    def story(state: State) -> dict[str, Any]:
        return {"answer": llm(f"Write a story: {state['request']}")}

    def decide(state: State) -> str:
        return state["kind"]

    builder = StateGraph(State)
    builder.add_node("route", route)
    builder.add_node("poem", poem)
    builder.add_node("joke", joke)
    builder.add_node("story", story)
    builder.add_edge(START, "route")
    builder.add_conditional_edges(
        "route", decide, {"poem": "poem", "joke": "joke", "story": "story"}
    )
    builder.add_edge("poem", END)
    builder.add_edge("joke", END)
    builder.add_edge("story", END)
    return builder.compile().invoke({"request": request})["answer"]


def prompt_chaining(product: str) -> str:
    class State(TypedDict):
        product: str
        draft: str
        polished: str

    def draft(state: State) -> dict[str, Any]:
        return {"draft": llm(f"Write a two-line ad for {state['product']} with a call to action")}

    def gate(state: State) -> str:
        return "pass" if "call to action" in state["draft"].lower() else "fail"

    def polish(state: State) -> dict[str, Any]:
        return {"polished": llm(f"Polish this ad: {state['draft']}")}

    builder = StateGraph(State)
    builder.add_node("draft", draft)
    builder.add_node("polish", polish)
    builder.add_edge(START, "draft")
    builder.add_conditional_edges("draft", gate, {"pass": "polish", "fail": END})
    builder.add_edge("polish", END)
    return builder.compile().invoke({"product": product}).get("polished", "")


def evaluator_optimizer(topic: str) -> str:
    class State(TypedDict):
        topic: str
        feedback: str
        joke: str
        score: int
        rounds: int

    def write(state: State) -> dict[str, Any]:
        feedback = state.get("feedback", "none yet")
        return {
            "joke": llm(f"Write a joke about {state['topic']}. Feedback: {feedback}"),
            "rounds": state.get("rounds", 0) + 1,
        }

    def grade(state: State) -> dict[str, Any]:
        result = llm_structured("grade", f"Grade: {state['joke']}")
        return {"score": result["score"], "feedback": result["feedback"]}

    def again(state: State) -> str:
        return "done" if state["score"] >= 8 or state["rounds"] >= 4 else "again"

    builder = StateGraph(State)
    builder.add_node("write", write)
    builder.add_node("grade", grade)
    builder.add_edge(START, "write")
    builder.add_edge("write", "grade")
    builder.add_conditional_edges("grade", again, {"done": END, "again": "write"})
    return builder.compile().invoke({"topic": topic})["joke"]


def orchestrator_worker(task: str) -> str:
    class State(TypedDict):
        task: str
        sections: list[dict[str, str]]
        written: Annotated[list[str], operator.add]
        report: str

    class WorkerState(TypedDict):
        section: dict[str, str]
        task: str

    def outline(state: State) -> dict[str, Any]:
        return {"sections": llm_structured("outline", f"Split {state['task']}")["sections"]}

    def assign(state: State) -> list[Send]:
        return [Send("worker", {"section": s, "task": state["task"]}) for s in state["sections"]]

    def worker(state: WorkerState) -> dict[str, Any]:
        s = state["section"]
        return {"written": [llm(f"Write '{s['title']}' of {state['task']}: {s['brief']}")]}

    def report(state: State) -> dict[str, Any]:
        return {"report": llm(f"Join into one report on {state['task']}: {state['written']}")}

    builder = StateGraph(State)
    builder.add_node("outline", outline)
    builder.add_node("worker", worker)
    builder.add_node("report", report)
    builder.add_edge(START, "outline")
    builder.add_conditional_edges("outline", assign, ["worker"])
    builder.add_edge("worker", "report")
    builder.add_edge("report", END)
    return builder.compile().invoke({"task": task})["report"]


def subgraph(topic: str) -> str:
    class ResearchState(TypedDict):
        topic: str
        sources: str
        notes: str

    class State(TypedDict):
        topic: str
        notes: str
        angle: str
        article: str

    def sources(state: ResearchState) -> dict[str, Any]:
        return {"sources": llm(f"Name three kinds of sources on {state['topic']}")}

    def notes(state: ResearchState) -> dict[str, Any]:
        return {"notes": llm(f"Take notes on {state['topic']} from: {state['sources']}")}

    research = StateGraph(ResearchState)
    research.add_node("sources", sources)
    research.add_node("notes", notes)
    research.add_edge(START, "sources")
    research.add_edge("sources", "notes")
    research.add_edge("notes", END)

    def angle(state: State) -> dict[str, Any]:
        return {"angle": llm(f"Suggest a fresh angle on {state['topic']}")}

    def article(state: State) -> dict[str, Any]:
        return {"article": llm(f"Article on {state['topic']}: {state['angle']}, {state['notes']}")}

    builder = StateGraph(State)
    builder.add_node("research", research.compile())
    builder.add_node("angle", angle)
    builder.add_node("article", article)
    builder.add_edge(START, "research")
    builder.add_edge(START, "angle")
    builder.add_edge(["research", "angle"], "article")
    builder.add_edge("article", END)
    return builder.compile().invoke({"topic": topic})["article"]


PORTS = {
    "prompt_chaining": (prompt_chaining, "a solar kettle"),
    "routing": (routing, "tell me a joke"),
    "map_reduce": (map_reduce, "cats"),
    "orchestrator_worker": (orchestrator_worker, "a report on heat pumps"),
    "evaluator_optimizer": (evaluator_optimizer, "owls"),
    "subgraph": (subgraph, "tidal power"),
}


def code_lines(source: str) -> int:
    """Lines holding code: no blank lines, comments, docstrings or imports."""
    lines: set[int] = set()
    previous = tokenize.NEWLINE
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT):
            previous = tok.type if tok.type != tokenize.NL else previous
            continue
        if tok.type == tokenize.DEDENT or tok.type == tokenize.ENDMARKER:
            continue
        if tok.type == tokenize.STRING and previous in (tokenize.NEWLINE, tokenize.INDENT):
            previous = tokenize.STRING
            continue  # a docstring or a bare string statement
        lines.update(range(tok.start[0], tok.end[0] + 1))
        previous = tok.type
    text = source.splitlines()
    return sum(1 for n in lines if not text[n - 1].lstrip().startswith(("import ", "from ")))


def port_lines(fn: Any) -> int:
    """A port's workflow lines: its body, without the `def` line."""
    return code_lines(inspect.getsource(fn)) - 1


def example_lines(name: str) -> int:
    """A graphs/ example's workflow lines: from `Graph(` on, the offline scripting excluded."""
    source = (Path(__file__).resolve().parent.parent / "graphs" / f"{name}.py").read_text()
    lines = source.splitlines()
    start = next(i for i, line in enumerate(lines) if "Graph(" in line and "=" in line)
    return code_lines("\n".join(lines[start:]) + "\n")


def main() -> int:
    print(f"{'workflow':<22}{'dagagents':>10}{'LangGraph':>11}")
    for name, (fn, arg) in PORTS.items():
        assert fn(arg)  # the port runs
        print(f"{name:<22}{example_lines(name):>10}{port_lines(fn):>11}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
