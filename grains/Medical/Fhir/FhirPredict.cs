using System.Text.Json;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using Hl7.Fhir.Utility;

namespace MedServe.Medical.Fhir;

/// <summary>A FHIR request that cannot be served: the HTTP status and the OperationOutcome that says why, each issue naming its element.</summary>
public sealed class FhirProblem(int status, OperationOutcome outcome) : Exception("FHIR request refused")
{
    public int Status { get; } = status;

    public OperationOutcome Outcome { get; } = outcome;

    public static FhirProblem Of(int status, OperationOutcome.IssueType type, string expression, string diagnostics) =>
        new(status, Single(type, expression, diagnostics));

    public static OperationOutcome Single(OperationOutcome.IssueType type, string? expression, string diagnostics)
    {
        var issue = new OperationOutcome.IssueComponent
        {
            Severity = OperationOutcome.IssueSeverity.Error,
            Code = type,
            Diagnostics = diagnostics,
        };
        if (expression is not null)
        {
            issue.Expression = [expression];
        }
        return new OperationOutcome { Issue = [issue] };
    }
}

/// <summary>What a FHIR request gives the model: one record of feature values and the subject to answer about.</summary>
public sealed record FhirInput(double[] Values, ResourceReference? Subject);

/// <summary>
/// FHIR R4 for tabular models (HL7's SDK, Hl7.Fhir.R4): a Bundle of Observations, or a Parameters resource carrying
/// them (each parameter's resource, or a Bundle in one), becomes one record of the model's features; the answer is a
/// RiskAssessment (a classifier: an output named <c>probabilities</c> with class labels) or an Observation (a model whose
/// first output is one value per record). Observations map to features by <c>Observation.code.coding</c>: LOINC
/// (<c>http://loinc.org</c>) where the feature declares its code, or <c>urn:medserve:feature</c> with the feature's name
/// as the code (features without a standard code). Values come from <c>valueQuantity</c> with a UCUM unit
/// (<c>valueQuantity.system</c> <c>http://unitsofmeasure.org</c>, <c>valueQuantity.code</c>), converted to the feature's
/// unit (<see cref="FeatureValues"/>); <c>valueInteger</c> for a unitless feature. Observations of no feature (other
/// codes), Patients and other resources are ignored; Observations marked entered-in-error or cancelled are skipped.
/// Errors are OperationOutcomes whose issues name the element (<c>Bundle.entry[2].resource.valueQuantity.code</c>) and
/// never echo a value, an id or a reference.
/// </summary>
public static class FhirPredict
{
    /// <summary>The code system of <c>method</c> in MedServe's answers: the code is <c>model:version</c>.</summary>
    public const string ModelSystem = "urn:medserve:model";

    /// <summary>The code system of a RiskAssessment's outcome codes and a predicted Observation's code: the model's output labels and names.</summary>
    public const string OutputSystem = "urn:medserve:output";

    private static readonly BaseFhirJsonDeserializer Deserializer = new(Hl7.Fhir.Model.ModelInfo.ModelInspector, new DeserializerSettings());

    private static readonly BaseFhirJsonSerializer Serializer = new(Hl7.Fhir.Model.ModelInfo.ModelInspector);

    /// <summary>Serializes a resource as application/fhir+json.</summary>
    public static byte[] Serialize(Resource resource) => Serializer.SerializeToBytes(resource);

    /// <summary>Parses a FHIR JSON resource with the SDK; anything it refuses is a 400 OperationOutcome naming the element (its path), never the text.</summary>
    public static Resource Parse(ReadOnlySpan<byte> json)
    {
        if (json.IsEmpty)
        {
            throw FhirProblem.Of(400, OperationOutcome.IssueType.Required, "Bundle", "the body is empty: send a Bundle of Observations or a Parameters resource as application/fhir+json");
        }
        try
        {
            Protocol.JsonText.RequireUtf8(json, "the body");
        }
        catch (MedServeException e)
        {
            throw FhirProblem.Of(400, OperationOutcome.IssueType.Structure, "Bundle", e.Message);
        }
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = 64 });
        Resource? resource;
        IEnumerable<CodedException>? issues;
        try
        {
            Deserializer.TryDeserializeResource(ref reader, out resource, out issues);
        }
        catch (JsonException e)
        {
            throw FhirProblem.Of(400, OperationOutcome.IssueType.Structure, "Bundle", $"the body is not valid JSON (line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1})");
        }
        catch (Exception e) when (e is FormatException or InvalidOperationException or ArgumentException or CodedException)
        {
            throw FhirProblem.Of(400, OperationOutcome.IssueType.Structure, "Bundle", $"the body is not a FHIR JSON resource ({e.GetType().Name})");
        }
        var errors = (issues ?? []).ToList();
        if (errors.Count > 0 || resource is null)
        {
            var outcome = new OperationOutcome();
            foreach (var issue in errors.Take(20))
            {
                var path = (issue as ExtendedCodedException)?.InstancePath;
                outcome.Issue.Add(new OperationOutcome.IssueComponent
                {
                    Severity = OperationOutcome.IssueSeverity.Error,
                    Code = OperationOutcome.IssueType.Structure,
                    // The SDK's code (e.g. JSON116) and where; its message may quote the value, so it is not passed on.
                    Diagnostics = $"not valid FHIR R4 JSON ({issue.ErrorCode}){(path is null ? "" : " at " + path)}",
                    Expression = path is null ? [] : [path],
                });
            }
            if (outcome.Issue.Count == 0)
            {
                outcome.Issue.Add(new OperationOutcome.IssueComponent { Severity = OperationOutcome.IssueSeverity.Error, Code = OperationOutcome.IssueType.Structure, Diagnostics = "not a FHIR R4 resource" });
            }
            throw new FhirProblem(400, outcome);
        }
        return resource;
    }

    /// <summary>The Observations a request carries, each with the FHIRPath of its element.</summary>
    public static List<(Observation Observation, string Path)> Observations(Resource resource)
    {
        var found = new List<(Observation, string)>();
        switch (resource)
        {
            case Bundle bundle:
                Collect(bundle, "Bundle", found);
                break;
            case Parameters parameters:
                for (var i = 0; i < parameters.Parameter.Count; i++)
                {
                    var at = $"Parameters.parameter[{i}].resource";
                    switch (parameters.Parameter[i].Resource)
                    {
                        case Observation o:
                            found.Add((o, at));
                            break;
                        case Bundle b:
                            Collect(b, at, found);
                            break;
                    }
                }
                break;
            default:
                throw FhirProblem.Of(400, OperationOutcome.IssueType.NotSupported, resource.TypeName,
                    $"$predict takes a Bundle of Observations or a Parameters resource carrying them, not a {resource.TypeName}");
        }
        return found;
    }

    private static void Collect(Bundle bundle, string at, List<(Observation, string)> found)
    {
        for (var i = 0; i < bundle.Entry.Count; i++)
        {
            if (bundle.Entry[i].Resource is Observation o)
            {
                found.Add((o, $"{at}.entry[{i}].resource"));
            }
        }
    }

    /// <summary>
    /// The model's record from the Observations: each matched to a feature by code and its value converted to the
    /// feature's unit and checked. Every problem becomes an issue (422 for values, 400 for structure); all are reported at once.
    /// </summary>
    public static FhirInput Map(Resource resource, FeatureValues features)
    {
        var observations = Observations(resource);
        var issues = new List<OperationOutcome.IssueComponent>();
        var status = 422;
        void Issue(OperationOutcome.IssueType type, string expression, string diagnostics, int code = 422)
        {
            status = Math.Min(status, code);
            issues.Add(new OperationOutcome.IssueComponent { Severity = OperationOutcome.IssueSeverity.Error, Code = type, Expression = [expression], Diagnostics = diagnostics });
        }
        var fields = new List<(int, double?, string?, bool)>();
        var from = new string?[features.Width];
        ResourceReference? subject = null;
        string? subjectAt = null;
        foreach (var (o, at) in observations)
        {
            if (o.Status is ObservationStatus.EnteredInError or ObservationStatus.Cancelled)
            {
                continue;
            }
            var k = FeatureOf(o, features);
            if (k < 0)
            {
                continue;
            }
            var f = features.Features[k];
            if (from[k] is { } earlier)
            {
                Issue(OperationOutcome.IssueType.BusinessRule, $"{at}.code", $"a second Observation of feature '{f.Name}' (the first is {earlier}): send one");
                continue;
            }
            from[k] = at;
            if (o.Subject is { } s)
            {
                if (subject is null)
                {
                    (subject, subjectAt) = (s, at);
                }
                else if (!SameSubject(subject, s))
                {
                    Issue(OperationOutcome.IssueType.BusinessRule, $"{at}.subject", $"its subject differs from that of {subjectAt}: all Observations must be about one subject");
                }
            }
            var value = ValueOf(o, f, at, Issue);
            if (value is not { } v)
            {
                continue;
            }
            if (features.TryValue(k, v.Number, v.Unit, out var error) is null)
            {
                Issue(OperationOutcome.IssueType.Value, $"{at}.{v.Element}", error!);
                continue;
            }
            fields.Add((k, v.Number, v.Unit, false));
        }
        var row = features.Read(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(fields));
        foreach (var e in row.Errors.Where(e => !issues.Any(i => (i.Diagnostics ?? "").Contains($"'{e.Field}'", StringComparison.Ordinal))))
        {
            var f = features.Features[features.IndexOf(e.Field)];
            var code = f.Code is { } c ? $" (code {c.System}|{c.Code})" : $" (code {CodeSystems.Feature}|{f.Name})";
            Issue(OperationOutcome.IssueType.Required, resource is Bundle ? "Bundle.entry" : "Parameters.parameter", $"no Observation of feature '{f.Name}'{code}: {e.Message}");
        }
        if (issues.Count > 0)
        {
            throw new FhirProblem(status, new OperationOutcome { Issue = issues });
        }
        return new FhirInput(row.Values!, subject);
    }

    /// <summary>The feature an Observation's code names: LOINC where the feature declares it, or MedServe's feature system; -1 for none.</summary>
    private static int FeatureOf(Observation o, FeatureValues features)
    {
        foreach (var coding in o.Code?.Coding ?? [])
        {
            if (coding.System == CodeSystems.Feature && coding.Code is { } name && features.IndexOf(name) is >= 0 and var k)
            {
                return k;
            }
            for (var j = 0; j < features.Width; j++)
            {
                if (features.Features[j].Code is { } c && c.System == coding.System && c.Code == coding.Code)
                {
                    return j;
                }
            }
        }
        return -1;
    }

    private static bool SameSubject(ResourceReference a, ResourceReference b) =>
        a.Reference == b.Reference && a.Identifier?.System == b.Identifier?.System && a.Identifier?.Value == b.Identifier?.Value;

    private readonly record struct Given(double Number, string? Unit, string Element);

    /// <summary>The number and UCUM unit an Observation gives, or null after reporting what is wrong with it.</summary>
    private static Given? ValueOf(Observation o, FeatureSchema f, string at, Action<OperationOutcome.IssueType, string, string, int> issue)
    {
        var measured = f.Code?.Unit ?? f.Unit;
        switch (o.Value)
        {
            case Quantity q:
                if (q.Value is not { } number)
                {
                    issue(OperationOutcome.IssueType.Required, $"{at}.valueQuantity.value", $"the Observation of feature '{f.Name}' has no value", 422);
                    return null;
                }
                if (q.Comparator is not null)
                {
                    issue(OperationOutcome.IssueType.Value, $"{at}.valueQuantity.comparator", $"the Observation of feature '{f.Name}' is a bound (comparator), not a value", 422);
                    return null;
                }
                if (q.Code is null)
                {
                    if (measured is null && q.Unit is null)
                    {
                        return new Given((double)number, null, "valueQuantity.value");
                    }
                    issue(OperationOutcome.IssueType.Required, $"{at}.valueQuantity.code",
                        $"the Observation of feature '{f.Name}' needs its unit as a UCUM code (valueQuantity.system {CodeSystems.Ucum}, valueQuantity.code)", 422);
                    return null;
                }
                if (q.System is not null && q.System != CodeSystems.Ucum)
                {
                    issue(OperationOutcome.IssueType.CodeInvalid, $"{at}.valueQuantity.system", $"the unit of feature '{f.Name}' must be a UCUM code (system {CodeSystems.Ucum})", 422);
                    return null;
                }
                if (measured is null)
                {
                    if (q.Code is "1")
                    {
                        return new Given((double)number, null, "valueQuantity.value");
                    }
                    issue(OperationOutcome.IssueType.CodeInvalid, $"{at}.valueQuantity.code", $"feature '{f.Name}' takes a plain number: its unit must be 1 or left out", 422);
                    return null;
                }
                if (Ucum.Convert(1, q.Code, measured, f.MolarMass) is null)
                {
                    issue(OperationOutcome.IssueType.CodeInvalid, $"{at}.valueQuantity.code",
                        $"the unit of feature '{f.Name}' does not convert to {measured} (units that do: {string.Join(", ", FeatureValues.UnitsFor(f))})", 422);
                    return null;
                }
                return new Given((double)number, q.Code, "valueQuantity.value");
            case Integer i when i.Value is { } n && measured is null:
                return new Given(n, null, "valueInteger");
            case null:
                issue(OperationOutcome.IssueType.Required, $"{at}.value", $"the Observation of feature '{f.Name}' has no value", 422);
                return null;
            default:
                issue(OperationOutcome.IssueType.NotSupported, $"{at}.value",
                    measured is null ? $"feature '{f.Name}' takes valueQuantity or valueInteger" : $"feature '{f.Name}' takes valueQuantity with a UCUM unit", 422);
                return null;
        }
    }

    /// <summary>A model's number as a FHIR decimal; null (data absent) when it is not finite.</summary>
    private static decimal? Decimal(double value, int digits) =>
        double.IsFinite(value) && Math.Abs(value) < 1e20 ? Math.Round((decimal)value, digits) : null;

    /// <summary>Whether the model answers with a RiskAssessment: it has an output named <c>probabilities</c> with class labels.</summary>
    public static bool IsClassifier(ModelManifest manifest) =>
        manifest.Outputs.Any(o => o.Name == "probabilities" && o.Labels is { Length: >= 2 });

    /// <summary>Names the model and version that answered (RiskAssessment.method, Observation.method).</summary>
    public static CodeableConcept Method(string model, string version) => new()
    {
        Coding = [new Coding(ModelSystem, $"{model}:{version}", $"MedServe model {model} version {version}")],
        Text = $"MedServe model {model} version {version}",
    };

    /// <summary>A RiskAssessment: one prediction per class (outcome = the class label, probabilityDecimal), about the input's subject.</summary>
    public static RiskAssessment RiskAssessment(ModelManifest manifest, InferenceResponse response, ResourceReference subject)
    {
        var spec = manifest.Outputs.First(o => o.Name == "probabilities");
        var probabilities = response.Outputs.First(o => o.Name == "probabilities");
        var assessment = new RiskAssessment
        {
            Status = ObservationStatus.Final,
            Subject = subject,
            Occurrence = new FhirDateTime(DateTimeOffset.UtcNow),
            Method = Method(response.ModelName, response.ModelVersion),
        };
        for (var j = 0; j < spec.Labels!.Length; j++)
        {
            assessment.Prediction.Add(new RiskAssessment.PredictionComponent
            {
                Outcome = new CodeableConcept(OutputSystem, spec.Labels[j], spec.Labels[j], spec.Labels[j]),
                Probability = new FhirDecimal(Decimal(probabilities.GetDouble(j), 8)),
            });
        }
        return assessment;
    }

    /// <summary>An Observation of the model's first output (one value), with the output's unit when it has one, about the input's subject.</summary>
    public static Observation Prediction(ModelManifest manifest, InferenceResponse response, ResourceReference? subject)
    {
        var output = response.Outputs[0];
        var spec = manifest.Outputs.FirstOrDefault(o => o.Name == output.Name);
        var label = spec?.Labels is [var only] ? only : output.Name;
        var quantity = new Quantity { Value = Decimal(output.GetDouble(0), 6) };
        if (spec?.Unit is { } unit)
        {
            quantity.Unit = unit;
            quantity.System = CodeSystems.Ucum;
            quantity.Code = unit;
        }
        return new Observation
        {
            Status = ObservationStatus.Final,
            Code = new CodeableConcept(OutputSystem, output.Name, label, $"{label} ({response.ModelName} {response.ModelVersion})"),
            Subject = subject,
            Issued = DateTimeOffset.UtcNow,
            Value = quantity,
            Method = Method(response.ModelName, response.ModelVersion),
        };
    }
}
