// Runs one agent through @ag-ui/client's HttpAgent against our POST /agui/ and prints
// what the client saw as JSON. The client verifies the event stream itself
// (its verifyEvents stage): a stream it rejects makes runAgent throw.
// Usage: node agui_run.mjs <base-url> <token> <agent> <message> [options-json] [thread-id]
import { HttpAgent } from "@ag-ui/client";

const [base, token, agentName, message, optionsJson, threadId] = process.argv.slice(2);
const agent = new HttpAgent({
  url: `${base}/agui/`,
  headers: { Authorization: `Bearer ${token}` },
  threadId: threadId || undefined,
});
agent.messages = [{ id: "u1", role: "user", content: message }];
const events = [];
let finished = null;
try {
  const result = await agent.runAgent(
    { forwardedProps: { agent: agentName, options: JSON.parse(optionsJson || "{}") } },
    {
      onEvent: ({ event }) => { events.push(event.type); },
      onRunFinishedEvent: (params) => { finished = { outcome: params.outcome, result: params.result ?? null }; },
    },
  );
  const assistant = agent.messages.filter((m) => m.role === "assistant" && typeof m.content === "string");
  console.log(JSON.stringify({
    ok: true,
    threadId: agent.threadId,
    events,
    finished,
    result: result.result ?? null,
    answer: assistant.map((m) => m.content),
    toolResults: agent.messages.filter((m) => m.role === "tool").map((m) => m.content),
  }));
} catch (error) {
  console.log(JSON.stringify({ ok: false, error: String(error && error.message || error), events }));
  process.exitCode = 1;
}
