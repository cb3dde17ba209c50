"""Prompts, one place per node. Short and explicit, so that small local models follow them too."""

from __future__ import annotations

from thrifty.budget import POLICY

REACT_SYSTEM = """You answer questions by looking things up with tools.
Call one tool at a time. Search with short keyword queries (names, titles), not whole questions.
When you know the answer, reply with only the answer: a short phrase (a name, a date, a number, yes or no), no explanation."""

REACT_TASK = "Question: {question}"

FINAL_ANSWER = (
    "{reason} You cannot use tools any more. Answer the question now from what you found: "
    "reply with only the answer (a few words), or 'unknown' if you cannot tell.\nQuestion: {question}"
)


JSON_ACTION = (
    'Reply with one JSON object: a tool call {{"tool": name, "arguments": {{...}}}}'
    "{answer}. Tools:\n{tools}\nQuestion: {question}"
)


FORCED_REFUSED = (
    "A verifier did not accept these answers from this evidence: {refused}. "
    "Answer again from the evidence above (the same answer only if the evidence really gives it)."
)


def react_system(tracker: bool, extra: str | None = None) -> str:
    """The solver's system prompt; with the Budget Tracker it carries the BATS regime policy."""
    parts = [REACT_SYSTEM]
    if tracker:
        parts.append(POLICY)
    if extra:
        parts.append(extra.strip())
    return "\n\n".join(parts)


# ------------------------------------------------------------------------------------------- planner
PLANNER_SYSTEM = """You plan how to answer a question with a search tool.
Split the question into clues:
- exploration: 1 to 3 short search clues that find candidate answers (names, titles, keywords); the most distinctive first.
- verification: 0 to 3 conditions a correct answer must meet (check these only on candidates).
Reply with JSON only: {"exploration": ["..."], "verification": ["..."]}"""

PLANNER_TASK = "Question: {question}"

REPLANNER_TASK = """Question: {question}
Checklist so far:
{checklist}
The last line of search failed: {summary}
Clues that already failed (do not repeat them, not even reworded):
{failed}
Give 1 or 2 NEW exploration clues, different from the failed ones, and any missing verification conditions.
Reply with JSON only: {{"exploration": ["..."], "verification": ["..."]}}"""

# ------------------------------------------------------------------------------------------ verifier
VERIFIER_SYSTEM = """You check a proposed answer using only the evidence found so far.
For each condition say satisfied, contradicted or unverifiable. Then decide:
- SUCCESS: the evidence supports the answer and no condition is contradicted.
- CONTINUE: the search is on the right track, the error can be fixed, and the budget is enough to dig deeper.
- PIVOT: a dead end, repeated failed searches, or too little budget for this line: try a different line.
The trajectory_summary (2-3 sentences) replaces the search history in the next attempt: keep the facts found.
Reply with JSON only: {"verification": [{"constraint": "...", "status": "satisfied"}], "decision": "SUCCESS", "justification": "...", "trajectory_summary": "..."}"""

VERIFIER_TASK = """Question: {question}
Conditions:
{conditions}
Proposed answer: {answer}
Evidence:
{evidence}
{budget}"""

# --------------------------------------------------------------------------------------------- judge
JUDGE_SYSTEM = """You pick the best answer to a question among candidates found by earlier attempts.
Prefer candidates the verifier accepted and answers supported by evidence.
Reply with JSON only: {"index": 0, "reason": "..."}"""

JUDGE_TASK = """Question: {question}
Candidates:
{candidates}"""

# ------------------------------------------------------------------------- value tree: expansion + critic
EXPAND_SYSTEM = """You search for the answer to a question along several lines at once.
Propose up to {k} DIFFERENT next actions for the line of search shown. Each action is a tool call
{{"tool": "<name>", "arguments": {{...}}}}, or, when the evidence already gives the answer,
{{"tool": "answer", "arguments": {{"answer": "<short answer>"}}}}.
Tools:
{tools}
Reply with JSON only: {{"thought": "...", "actions": [{{"tool": "...", "arguments": {{}}}}]}}"""

EXPAND_TASK = """Question: {question}
This line of search so far:
{evidence}
{budget}"""

EXPAND_TRIED = """Already tried from this point (do not repeat these; build on what they listed):
{tried}"""

EXPAND_LISTED = """Pages listed earlier on this line by searches that found no evidence themselves (read one if it helps):
{listed}"""

EXPAND_SHARED = """Found on other lines of search (use it; do not search for it again):
{shared}"""

CRITIC_SYSTEM = """You judge the progress made by the LAST step of a search, not the whole search.
progress = 1.0 if the last result adds new, relevant evidence toward the answer; 0.5 if partly useful;
0.0 if it is redundant, off-topic or empty. Be strict: most steps add little.
Reply with JSON only: {"progress": 0.0, "reason": "..."}"""

CRITIC_TASK = """Question: {question}
Known before this step:
{before}
Last step: {action}
Its result:
{observation}"""
