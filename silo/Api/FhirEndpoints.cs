using System.Diagnostics;
using Hl7.Fhir.Model;
using MedServe.Dashboard.Security;
using MedServe.Inference.Runtime;
using MedServe.Medical;
using MedServe.Medical.Fhir;
using MedServe.Protocol;
using MedServe.Routing;

namespace MedServe.Silo.Api;

/// <summary>
/// FHIR R4: <c>POST /fhir/models/{name}[/versions/{v}]/$predict</c> takes a Bundle of Observations (or a Parameters
/// resource carrying them) as <c>application/fhir+json</c> and answers a RiskAssessment (classifiers) or an Observation
/// (regression) whose <c>method</c> names the model and version and whose <c>subject</c> is the input's, as given
/// (<see cref="FhirPredict"/>). Errors are OperationOutcomes whose issues name the element; never a 5xx for bad input.
/// </summary>
public static partial class FhirEndpoints
{
    public static IEndpointRouteBuilder MapFhirApi(this IEndpointRouteBuilder app)
    {
        // Inference: the same permission and per-key rate as V2 infer.
        var fhir = app.MapGroup("/fhir").RequireRateLimiting(Limits.InferPolicy);
        fhir.MapPost("/models/{name}/$predict", (string name, HttpContext context, IGrainFactory grains, ModelRouter router, AuditWriter audit, ILogger<ModelRouter> logger) =>
            PredictAsync(name, null, context, grains, router, audit, logger)).RequireAuthorization(Permissions.Infer);
        fhir.MapPost("/models/{name}/versions/{version}/$predict", (string name, string version, HttpContext context, IGrainFactory grains, ModelRouter router, AuditWriter audit, ILogger<ModelRouter> logger) =>
            PredictAsync(name, version, context, grains, router, audit, logger)).RequireAuthorization(Permissions.Infer);
        return app;
    }

    private static async Task<IResult> PredictAsync(string name, string? version, HttpContext context, IGrainFactory grains, ModelRouter router, AuditWriter audit, ILogger logger)
    {
        var started = Stopwatch.GetTimestamp();
        string? served = null;
        var inputHash = default(InputDigest);
        string outcome;
        IResult result;
        try
        {
            if (!RecordsEndpoints.IsJson(context.Request.ContentType))
            {
                throw FhirProblem.Of(StatusCodes.Status415UnsupportedMediaType, OperationOutcome.IssueType.NotSupported, "Bundle",
                    $"$predict takes {MedicalFormats.FhirJson} (a Bundle of Observations or a Parameters resource)");
            }
            var route = await router.ResolveAsync(name, version);
            var manifest = (await grains.GetGrain<IModelGrain>(route.Model).GetVersionAsync(route.Version))?.Manifest
                ?? throw MedServeException.NotFound($"model '{name}' has no version '{route.Version}'");
            FeatureValues features;
            try
            {
                features = new FeatureValues(manifest);
            }
            catch (MedServeException e)
            {
                throw FhirProblem.Of(StatusCodes.Status422UnprocessableEntity, OperationOutcome.IssueType.NotSupported, "Bundle", e.Message);
            }
            var body = await RecordsEndpoints.ReadBodyAsync(context.Request, context.RequestAborted);
            inputHash = audit.AuditsInference ? InputDigest.Of(body) : default;
            var resource = FhirPredict.Parse(body);
            var input = FhirPredict.Map(resource, features);
            var classifier = FhirPredict.IsClassifier(manifest);
            if (classifier && input.Subject is null)
            {
                throw FhirProblem.Of(StatusCodes.Status422UnprocessableEntity, OperationOutcome.IssueType.Required, "Observation.subject",
                    "the Observations name no subject: a RiskAssessment is about a subject (RiskAssessment.subject is required)");
            }
            var response = await router.InferAsync(route.Model, route.Version, new InferenceRequest([features.Tensor([input.Values])]));
            served = response.ModelVersion;
            Resource answer = classifier
                ? FhirPredict.RiskAssessment(manifest, response, input.Subject!)
                : FhirPredict.Prediction(manifest, response, input.Subject);
            outcome = "success";
            result = Results.Bytes(FhirPredict.Serialize(answer), MedicalFormats.FhirJson);
        }
        catch (FhirProblem p)
        {
            outcome = nameof(ErrorKind.InvalidInput);
            result = Outcome(p.Status, p.Outcome);
        }
        catch (MedServeException e)
        {
            outcome = e.Kind.ToString();
            var type = e.Kind switch
            {
                ErrorKind.NotFound => OperationOutcome.IssueType.NotFound,
                ErrorKind.NotReady or ErrorKind.Overloaded or ErrorKind.Timeout => OperationOutcome.IssueType.Transient,
                ErrorKind.TooLarge => OperationOutcome.IssueType.TooCostly,
                ErrorKind.InvalidInput => OperationOutcome.IssueType.Invalid,
                _ => OperationOutcome.IssueType.Exception,
            };
            if (e.IsRetryable)
            {
                context.Response.Headers.RetryAfter = "1";
            }
            result = Outcome(ErrorStatus.Of(e.Kind), FhirProblem.Single(type, e.Field, e.Message));
        }
        catch (Exception e) when (e is TimeoutException or OrleansException)
        {
            PredictFailed(logger, e.GetType().Name);
            outcome = nameof(ErrorKind.NotReady);
            context.Response.Headers.RetryAfter = "1";
            result = Outcome(StatusCodes.Status503ServiceUnavailable, FhirProblem.Single(OperationOutcome.IssueType.Transient, null, $"the cluster could not serve '{name}' just now ({e.GetType().Name}); retry"));
        }
        catch (Exception e) when (e is not (OperationCanceledException or BadHttpRequestException))
        {
            // Never echo the exception: it may carry input values. Log its type and frames only.
            PredictFailed(logger, ErrorShape.Of(e));
            outcome = nameof(ErrorKind.Internal);
            result = Outcome(StatusCodes.Status500InternalServerError, FhirProblem.Single(OperationOutcome.IssueType.Exception, null, $"internal error while serving '{name}'"));
        }
        InferenceAnswered.Record(audit, router, context, name, version, served, inputHash, outcome, started, "fhir");
        return result;
    }

    private static IResult Outcome(int status, OperationOutcome outcome) =>
        new RecordsEndpoints.BodyResult(FhirPredict.Serialize(outcome), MedicalFormats.FhirJson, status);

    [LoggerMessage(3201, LogLevel.Error, "FHIR $predict failed with {ExceptionType}")]
    private static partial void PredictFailed(ILogger logger, string exceptionType);
}
