using System.Diagnostics;
using MedServe.Dashboard.Security;
using MedServe.Inference.Runtime;
using MedServe.Routing;

namespace MedServe.Silo.Api;

/// <summary>
/// What every HTTP inference front end (V2, named records, FHIR) records once it has its answer, success or not: the
/// audit trail's entry (who ran which version on which input, by the input's digest, batched off the request's path)
/// and the request histogram. Labels stay bounded: a name or version is a label only once it has been routed (a request
/// refused before routing, say for a body that does not parse, names whatever its caller wrote: it counts as
/// <c>(unknown)</c>, so callers cannot make series at will), and a request that named no version counts for the version
/// that served it.
/// </summary>
internal static class InferenceAnswered
{
    /// <param name="started">The request's start (<see cref="Stopwatch.GetTimestamp"/>).</param>
    /// <param name="detail">Which front end, for the audit (V2 gives none).</param>
    public static void Record(AuditWriter audit, ModelRouter router, HttpContext context, string name, string? version, string? served,
        in InputDigest inputHash, string outcome, long started, string? detail = null)
    {
        if (audit.AuditsInference)
        {
            audit.RecordInference(context, name, served ?? version, inputHash, outcome, detail);
        }
        var known = outcome != nameof(ErrorKind.NotFound) && (served is not null || router.HasRouted(name, version));
        InferenceMetrics.RecordRequest(known ? name : "(unknown)", known ? served ?? version : null, outcome, Stopwatch.GetElapsedTime(started));
    }
}
