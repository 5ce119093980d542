"""A ReAct agent: the model thinks, picks its next action with `select`, writes the tool's
arguments under the tool's JSON schema, and reads the tool's result, until it picks `finish`.

Python runs between the model's steps (the program reads `s["action_0"]` as soon as it is
chosen), and every step extends the same cached prefix, so the engine computes each earlier turn
once. The arguments are constrained: `json.loads` never fails and the enum fields are always ones
the tool knows, whatever the (small) model would have written.

Run: python tutorials/09_react_agent.py
"""

from __future__ import annotations

import ast
import json
import operator

import sgl

FACTS = {("France", "capital"): "Paris", ("France", "population"): "68 million",
         ("Italy", "capital"): "Rome", ("Italy", "population"): "59 million",
         ("Japan", "capital"): "Tokyo", ("Japan", "population"): "124 million"}
TOOLS = {
    "lookup": {"type": "object", "additionalProperties": False, "required": ["country", "fact"],
               "properties": {"country": {"enum": ["France", "Italy", "Japan"]},
                              "fact": {"enum": ["capital", "population"]}}},
    "calculator": {"type": "object", "additionalProperties": False, "required": ["expression"],
                   "properties": {"expression": {"type": "string", "pattern": "^[0-9][0-9+*() -]{0,24}$"}}},
}
ACTIONS = [*TOOLS, "finish"]
EXAMPLES = """Question: What is the population of Japan?
Thought: I should look it up.
Action: lookup
Action Input: {"country": "Japan", "fact": "population"}
Observation: 124 million
Thought: I know the answer.
Action: finish
Final Answer: 124 million

Question: What is 12 times 3?
Thought: I should compute it.
Action: calculator
Action Input: {"expression": "12 * 3"}
Observation: 36
Thought: I know the answer.
Action: finish
Final Answer: 36
"""
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def calculate(expression: str) -> str:
    """+, - and * over integers (no eval): the calculator tool."""
    def value(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](value(node.left), value(node.right))
        raise ValueError(f"cannot compute {ast.unparse(node)!r}")

    try:
        return str(value(ast.parse(expression, mode="eval").body))
    except (SyntaxError, ValueError) as e:
        return f"error: {e}"


def run_tool(name: str, args: dict) -> str:
    if name == "lookup":
        return FACTS[(args["country"], args["fact"])]
    return calculate(args["expression"])


@sgl.function
def react(s, question, max_steps):
    s += "Answer the question with the tools lookup (a country's capital or population) and calculator.\n\n"
    s += EXAMPLES + "\nQuestion: " + question + "\n"
    for i in range(max_steps):
        s += "Thought:" + sgl.gen(f"thought_{i}", max_tokens=24, stop="\n") + "\n"
        # the first step must consult a tool; later ones may finish
        s += "Action: " + sgl.select(f"action_{i}", choices=ACTIONS if i else list(TOOLS)) + "\n"
        action = s[f"action_{i}"]
        if action == "finish":
            s += "Final Answer:" + sgl.gen("answer", max_tokens=16, stop="\n")
            return
        s += "Action Input: " + sgl.gen(f"input_{i}", max_tokens=40, json_schema=TOOLS[action])
        observation = run_tool(action, json.loads(s[f"input_{i}"]))
        s.set_var(f"observation_{i}", observation)
        s += "\nObservation: " + observation + "\n"


def main(question: str = "What is the capital of Italy?", max_steps: int = 3) -> dict:
    state = react.run(question=question, max_steps=max_steps, temperature=0)
    print(state.text())
    steps = []
    for i in range(max_steps):
        if f"action_{i}" not in state:
            break
        step = {"thought": state[f"thought_{i}"].strip(), "action": state[f"action_{i}"]}
        if step["action"] != "finish":
            step["input"] = json.loads(state[f"input_{i}"])
            step["observation"] = state[f"observation_{i}"]
        steps.append(step)
    answer = state["answer"].strip() if "answer" in state else None
    return {"steps": steps, "answer": answer, "text": state.text()}


if __name__ == "__main__":
    main()
