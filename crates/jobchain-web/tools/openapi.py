# Writes the API's OpenAPI document: run from crates/jobchain-web,
#   python3 tools/openapi.py > assets/openapi.json
# The router serves assets/openapi.json; its tests check every answer against it.
import json
def ref(n): return {"$ref": f"#/components/schemas/{n}"}
S=lambda **k: dict(k)
nullable=lambda t,**k: {"type":[t,"null"],**k}
time={"type":"string","format":"date-time"}
name={"type":"string","minLength":1,"maxLength":200,"pattern":"^[^\\u0000]+$"}
ntime={"type":["string","null"],"format":"date-time"}
counts={"type":"object","required":["blocked","pending","running","completed","dead","cancelled"],"properties":{k:{"type":"integer","minimum":0} for k in ["blocked","pending","running","completed","dead","cancelled"]},"additionalProperties":False}
jobstate={"type":"string","enum":["blocked","pending","running","completed","dead","cancelled"]}
wfstate={"type":"string","enum":["running","completed","failed","cancelled"]}
job={"type":"object","required":["id","kind","queue","payload","priority","state","run_at","attempts","max_attempts","errors","output","workflow_id","step","parent_id","unique_key","optional","worker","lease_until","created_at","started_at","finished_at","cancel_reason","concurrency_key"],
 "properties":{"id":{"type":"integer"},"kind":{"type":"string"},"queue":{"type":"string"},"payload":{},"priority":{"type":"integer"},"state":ref("JobState"),"run_at":time,"attempts":{"type":"integer","minimum":0},"max_attempts":{"type":"integer","minimum":0},
 "errors":{"type":"array","items":ref("AttemptError")},"output":{},"workflow_id":{"type":["string","null"],"format":"uuid"},"step":{"type":["string","null"]},"parent_id":{"type":["integer","null"]},"unique_key":{"type":["string","null"]},"optional":{"type":"boolean"},"worker":{"type":["string","null"]},"lease_until":ntime,"created_at":time,"started_at":ntime,"finished_at":ntime,"cancel_reason":{"type":["string","null"]},"concurrency_key":{"type":["string","null"]}},"additionalProperties":False}
attempt={"type":"object","required":["attempt","at","message"],"properties":{"attempt":{"type":"integer"},"at":time,"message":{"type":"string"}},"additionalProperties":False}
wf={"type":"object","required":["id","name","state","unique_key","created_at","finished_at","counts","tolerated_failures"],"properties":{"id":{"type":"string","format":"uuid"},"name":{"type":"string"},"state":ref("WorkflowState"),"unique_key":{"type":["string","null"]},"created_at":time,"finished_at":ntime,"counts":ref("JobCounts"),"tolerated_failures":{"type":"integer","minimum":0}},"additionalProperties":False}
edge={"type":"object","required":["job","depends_on","policy"],"properties":{"job":{"type":"integer"},"depends_on":{"type":"integer"},"policy":{"type":"string","enum":["required","optional"]}},"additionalProperties":False}
worker={"type":"object","required":["id","host","pid","queues","kinds","started_at","last_seen","expires_at"],"properties":{"id":{"type":"string"},"host":{"type":"string"},"pid":{"type":"integer"},"queues":{"type":"array","items":{"type":"string"}},"kinds":{"type":"array","items":{"type":"string"}},"started_at":time,"last_seen":time,"expires_at":time},"additionalProperties":False}
queue={"type":"object","required":["queue","paused","counts","oldest_pending_seconds"],"properties":{"queue":{"type":"string"},"paused":{"type":"boolean"},"counts":ref("JobCounts"),"oldest_pending_seconds":{"type":["number","null"]}},"additionalProperties":False}
queueinfo={"type":"object","required":["name","paused","updated_at"],"properties":{"name":{"type":"string"},"paused":{"type":"boolean"},"updated_at":time},"additionalProperties":False}
problem={"type":"object","required":["type","title","status","detail"],"properties":{"type":{"type":"string"},"title":{"type":"string"},"status":{"type":"integer"},"detail":{"type":"string"}}}
stats={"type":"object","required":["totals","queues","unhandled","throughput","workers"],"properties":{
 "totals":ref("JobCounts"),
 "queues":{"type":"array","items":ref("Queue")},
 "unhandled":{"type":"array","items":{"type":"object","required":["queue","kind","count","oldest_seconds","handled_on"],"properties":{"queue":{"type":"string"},"kind":{"type":"string"},"count":{"type":"integer"},"oldest_seconds":{"type":"number"},"handled_on":{"type":"array","items":{"type":"string"}}},"additionalProperties":False}},
 "throughput":{"type":"array","items":{"type":"object","required":["minute","completed","dead"],"properties":{"minute":time,"completed":{"type":"integer"},"dead":{"type":"integer"}},"additionalProperties":False}},
 "workers":{"type":"integer","minimum":0}},"additionalProperties":False}
jobopts={"type":"object","properties":{"queue":name,"priority":{"oneOf":[{"type":"integer","minimum":-32768,"maximum":32767},{"type":"string","enum":["low","normal","high","critical"]}]},"delay":{"type":"string","pattern":"^[0-9]{1,6}(ms|s|m|h|d)$","description":"500ms, 10s, 5m, 2h or 7d"},"run_at":{"type":"string","format":"date-time"},"max_attempts":{"type":"integer","minimum":1},"unique_key":name,"concurrency_key":name,"debounce":{"type":"object","required":["key","window"],"properties":{"key":name,"window":{"type":"string","pattern":"^[0-9]{1,6}(ms|s|m|h|d)$"}},"additionalProperties":False,"description":"collapse enqueues of key: one job runs window after the last"}},"additionalProperties":False}
enqreq={"type":"object","required":["kind"],"properties":{"kind":name,"payload":{},"options":ref("JobOptions"),"workflow_id":{"type":["string","null"],"format":"uuid","description":"join this workflow"}},"additionalProperties":False}
stepdoc={"type":"object","required":["name","kind"],"properties":{"name":name,"kind":name,"payload":{},"after":{"type":"array","items":name},"after_optional":{"type":"array","items":name},"optional":{"type":"boolean"},"queue":name,"priority":{"type":"integer","minimum":-32768,"maximum":32767},"max_attempts":{"type":"integer","minimum":1}},"additionalProperties":False}
wfdoc={"type":"object","required":["name","steps"],"properties":{"name":name,"unique_key":name,"input":{"description":"the payload of steps that set none"},"steps":{"type":"array","minItems":1,"items":ref("StepDocument")}},"additionalProperties":False}
dead_sel={"oneOf":[{"type":"object","required":["ids"],"properties":{"ids":{"type":"array","minItems":1,"maxItems":10000,"items":{"type":"integer","format":"int64"}}},"additionalProperties":False},{"type":"object","required":["all"],"properties":{"all":{"const":True},"kind":{"type":"string"}},"additionalProperties":False}],"description":"either ids, or all (optionally with kind)"}
bulk={"type":"object","required":["done","failed"],"properties":{"done":{"type":"array","items":{"type":"integer"}},"failed":{"type":"array","items":{"type":"object","required":["id","status","detail"],"properties":{"id":{"type":"integer"},"status":{"type":"integer"},"detail":{"type":"string"}},"additionalProperties":False}}},"additionalProperties":False}
def jsonresp(desc, schema): return {"description":desc,"content":{"application/json":{"schema":schema}}}
def prob(desc): return {"description":desc,"content":{"application/problem+json":{"schema":ref("Problem")}}}
common={"401":prob("a token is required"),"403":prob("wrong token, read-only server, or a refused host or origin"),"503":prob("the store is unreachable; retry")}
def op(opid, summary, responses, params=None, body=None):
    o={"operationId":opid,"summary":summary,"responses":{**responses,**common}}
    if params: o["parameters"]=params
    if body: o["requestBody"]={"required":True,"content":{"application/json":{"schema":body}}}
    return o
def q(name, schema, desc): return {"name":name,"in":"query","required":False,"schema":schema,"description":desc}
def p(name, schema, desc): return {"name":name,"in":"path","required":True,"schema":schema,"description":desc}
jobid=p("id",{"type":"integer","format":"int64"},"a job id")
wfid=p("id",{"type":"string","format":"uuid"},"a workflow id")
limit=q("limit",{"type":"integer","minimum":1,"maximum":500},"at most this many (default 50)")
bad=prob("bad input; the detail says what and how to fix it")
nf=prob("no such job or workflow")
conflict=prob("the job or workflow is not in a state that allows this")
doc={"openapi":"3.1.0","info":{"title":"jobchain","version":"1","description":"The HTTP API of jobchain, a durable background-job queue with chains and workflows. Errors are application/problem+json. Lists page by keyset: pass next_cursor back as cursor. With a token, every request needs Authorization: Bearer."},
 "servers":[{"url":"/api/v1"}],
 "components":{"schemas":{"Queue":queue,"QueueInfo":queueinfo,"Job":job,"JobState":jobstate,"WorkflowState":wfstate,"JobCounts":counts,"AttemptError":attempt,"WorkflowInfo":wf,"Edge":edge,"Worker":worker,"Problem":problem,"Stats":stats,"JobOptions":jobopts,"EnqueueRequest":enqreq,"StepDocument":stepdoc,"WorkflowDocument":wfdoc,"DeadSelection":dead_sel,"BulkResult":bulk},
  "securitySchemes":{"bearer":{"type":"http","scheme":"bearer"}}},
 "security":[{},{"bearer":[]}],
 "paths":{
  "/stats":{"get":op("stats","Counts by queue and state, unhandled kinds, throughput of the last hour per minute, live workers",{"200":jsonresp("stats",ref("Stats"))})},
  "/workers":{"get":op("workers","Live workers",{"200":jsonresp("workers",{"type":"object","required":["workers"],"properties":{"workers":{"type":"array","items":ref("Worker")}},"additionalProperties":False})})},
  "/jobs":{"get":op("listJobs","Jobs, newest first unless order=oldest",{"200":jsonresp("a page of jobs",{"type":"object","required":["jobs","next_cursor"],"properties":{"jobs":{"type":"array","items":ref("Job")},"next_cursor":{"type":["string","null"]}},"additionalProperties":False}),"400":bad},
     [q("state",ref("JobState"),"only this state"),q("kind",{"type":"string"},"only this kind"),q("queue",{"type":"string"},"only this queue"),q("workflow",{"type":"string","pattern":"^$|^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"},"only this workflow's jobs (a UUID; empty: any)"),limit,q("cursor",{"type":"string","pattern":"^-?[0-9]{1,18}$"},"next_cursor of the previous page"),q("order",{"type":"string","enum":["newest","oldest"]},"newest (default) or oldest first")]),
           "post":op("enqueue","Enqueue a job",{"201":jsonresp("enqueued",{"type":"object","required":["id","duplicate"],"properties":{"id":{"type":"integer"},"duplicate":{"type":"boolean"}},"additionalProperties":False}),"200":jsonresp("a live job held the unique key; nothing was written",{"type":"object","required":["id","duplicate"],"properties":{"id":{"type":"integer"},"duplicate":{"type":"boolean"}},"additionalProperties":False}),"400":bad,"413":prob("body too large"),"415":prob("not JSON")},body=ref("EnqueueRequest"))},
  "/jobs/{id}":{"get":op("job","A job with its history",{"200":jsonresp("the job",ref("Job")),"400":bad,"404":nf},[jobid])},
  "/jobs/{id}/retry":{"post":op("retryJob","Retry a dead job (revives the workflow branch it cancelled)",{"200":jsonresp("the job, pending again",ref("Job")),"400":bad,"404":nf,"409":conflict},[jobid])},
  "/jobs/{id}/cancel":{"post":op("cancelJob","Cancel a live job, or discard a dead one",{"200":jsonresp("the job, cancelled",ref("Job")),"400":bad,"404":nf,"409":conflict},[jobid])},
  "/workflows":{"get":op("listWorkflows","Workflows, newest first",{"200":jsonresp("a page of workflows",{"type":"object","required":["workflows","next_cursor"],"properties":{"workflows":{"type":"array","items":ref("WorkflowInfo")},"next_cursor":{"type":["string","null"]}},"additionalProperties":False}),"400":bad},
     [q("state",ref("WorkflowState"),"only this state"),q("name",{"type":"string"},"only this name"),limit,q("cursor",{"type":"string","pattern":"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?Z~[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"},"next_cursor of the previous page")]),
     "post":op("startWorkflow","Start a declared workflow (the document of jobchain workflow start --file)",{"201":jsonresp("started",{"type":"object","required":["id","duplicate","jobs"],"properties":{"id":{"type":"string","format":"uuid"},"duplicate":{"type":"boolean"},"jobs":{"type":"array","items":{"type":"integer"}}},"additionalProperties":False}),"200":jsonresp("a running workflow held the unique key",{"type":"object","required":["id","duplicate","jobs"],"properties":{"id":{"type":"string","format":"uuid"},"duplicate":{"type":"boolean"},"jobs":{"type":"array","items":{"type":"integer"}}},"additionalProperties":False}),"400":bad,"413":prob("body too large"),"415":prob("not JSON")},body=ref("WorkflowDocument"))},
  "/workflows/{id}":{"get":op("workflow","A workflow with its jobs and declared edges",{"200":jsonresp("the workflow",{"type":"object","required":["workflow","jobs","edges"],"properties":{"workflow":ref("WorkflowInfo"),"jobs":{"type":"array","items":ref("Job")},"edges":{"type":"array","items":ref("Edge")}},"additionalProperties":False}),"400":bad,"404":nf},[wfid])},
  "/workflows/{id}/cancel":{"post":op("cancelWorkflow","Cancel a running workflow's live jobs",{"200":jsonresp("the workflow, cancelled",ref("WorkflowInfo")),"400":bad,"404":nf,"409":conflict},[wfid])},
  "/queues":{"get":op("queues","Queues with jobs or a pause: paused or not, counts by state",{"200":jsonresp("queues",{"type":"object","required":["queues"],"properties":{"queues":{"type":"array","items":ref("Queue")}},"additionalProperties":False})})},
  "/queues/{name}/pause":{"post":op("pauseQueue","Pause a queue: no worker starts its jobs until it is resumed; running jobs finish",{"200":jsonresp("the queue's record",ref("QueueInfo")),"400":bad},[p("name",name,"a queue name")])},
  "/queues/{name}/resume":{"post":op("resumeQueue","Resume a paused queue",{"200":jsonresp("the queue's record",ref("QueueInfo")),"400":bad},[p("name",name,"a queue name")])},
  "/dlq/retry":{"post":op("dlqRetry","Retry dead jobs, by ids or all (of a kind)",{"200":jsonresp("what was retried and what could not be",ref("BulkResult")),"400":bad,"415":prob("not JSON")},body=ref("DeadSelection"))},
  "/dlq/cancel":{"post":op("dlqCancel","Discard dead jobs (they become cancelled), by ids or all (of a kind)",{"200":jsonresp("what was discarded and what could not be",ref("BulkResult")),"400":bad,"415":prob("not JSON")},body=ref("DeadSelection"))},
 }}
print(json.dumps(doc, indent=1))
