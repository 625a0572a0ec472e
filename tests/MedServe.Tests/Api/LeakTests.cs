using System.Net.Http.Headers;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using MedServe.Tests.Dicom;
using MedServe.Tests.Support;

namespace MedServe.Tests.Api;

/// <summary>
/// No patient data leaks: marker values and marker strings go in through every public endpoint (tensor data, tensor
/// names, requested outputs, request ids, job ids, item ids, CSV cells and header names, custom headers, bad JSON,
/// query strings, DICOM attributes and multipart headers), through successes and failures, and none of them comes out in the node's log, in <c>/metrics</c>
/// or in any error answer. The node is a real process logging at Information, as a user's node does, and tracing every
/// request (sample ratio 1) over OTLP to a receiver in the test, so the exported spans are searched too.
/// </summary>
public sealed class LeakTests
{
    /// <summary>A number in tensor data and CSV cells, and the text it must never be found as.</summary>
    private const float MarkerValue = 4242.4242f;
    private const string MarkerValueText = "4242.42";

    private readonly string _run = Guid.NewGuid().ToString("N")[..12];

    /// <summary>Every marker string made, by what it was sent as; each one names this run and its use.</summary>
    private readonly Dictionary<string, string> _markers = [];

    private string Marker(string use)
    {
        var marker = $"LEAK-{_run}-{use}";
        _markers[marker] = use;
        return marker;
    }

    /// <summary>What the node logs a job as: the first 12 hex digits of the SHA-256 of its id.</summary>
    private static string LogHash(string id) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(id)))[..12];

    private static readonly (string Method, string Path)[] Endpoints = PublicEndpoints.All;

    /// <summary>An answer; <paramref name="Error"/> when its body is an error message (a failure, or a job's results that hold item errors).</summary>
    private sealed record Answer(string What, int Status, string Body)
    {
        public bool Error { get; init; } = Status >= 300;
    }

    private static readonly float[] DiabetesRow = [61, 1, 25.8f, 90, 280, 195.4f, 55, 5, 4.9972f, MarkerValue];

    private static string Floats(float[] values) => string.Join(',', values.Select(v => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture)));

    [Fact]
    public async Task Markers_sent_through_every_endpoint_appear_in_no_log_metric_or_error()
    {
        var import = Paths.TempDirectory("leak-import");
        var data = Paths.TempDirectory("leak");
        foreach (var model in new[] { "diabetes-linear", "breast-cancer-logreg", "ct-mr-classifier" })
        {
            var to = Directory.CreateDirectory(Path.Combine(import, model)).FullName;
            foreach (var file in Directory.GetFiles(Path.Combine(Paths.Samples, model)))
            {
                File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
            }
        }
        await using var otlp = new OtlpSink();
        await using var node = await NodeProcess.StartAsync(data, import, NodeProcess.FreePort(), NodeProcess.FreePort(), NodeProcess.FreePort(),
            ["--accelerator", "cpu", "--Logging:LogLevel:Default", "Information", "--MedServe:Tracing:SampleRatio", "1", .. otlp.NodeArgs]);
        var answers = new List<Answer>();
        var patientHeader = Marker("x-patient-header");
        var requestIdHeader = Marker("x-request-id-header");

        async Task<Answer> Send(string what, string method, string path, HttpContent? content = null, bool authorized = true)
        {
            using var request = new HttpRequestMessage(new HttpMethod(method), path) { Content = content };
            request.Headers.TryAddWithoutValidation("X-Patient", patientHeader);
            request.Headers.TryAddWithoutValidation("X-Request-Id", requestIdHeader);
            if (!authorized)
            {
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Marker("bearer-" + what.Replace(' ', '-')));
            }
            using var response = await node.Http.SendAsync(request);
            var answer = new Answer($"{what}: {method} {path}", (int)response.StatusCode, await response.Content.ReadAsStringAsync());
            answers.Add(answer);
            return answer;
        }
        static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");
        static StringContent Csv(string csv) => new(csv, Encoding.UTF8, "text/csv");

        // V2 inference: a success whose request id is a marker (echoed in that answer, by the protocol, and nowhere else).
        var v2Id = Marker("v2-request-id");
        var ok = await Send("v2 json", "POST", "/v2/models/diabetes-linear/infer",
            Json($$"""{"id":"{{v2Id}}","inputs":[{"name":"input","datatype":"FP32","shape":[1,10],"data":[{{Floats(DiabetesRow)}}]}],"outputs":[{"name":"prediction"}]}"""));
        Assert.True(ok.Status == 200, ok.Body);
        Assert.Contains(v2Id, ok.Body, StringComparison.Ordinal);
        answers.Remove(ok);
        // The binary extension, with the marker value among the raw float32 bytes and another marker id.
        var binaryId = Marker("v2-binary-request-id");
        var header = Encoding.UTF8.GetBytes($$$"""{"id":"{{{binaryId}}}","inputs":[{"name":"input","datatype":"FP32","shape":[1,10],"parameters":{"binary_data_size":40}}]}""");
        var binary = new ByteArrayContent([.. header, .. MemoryMarshal.AsBytes(DiabetesRow.AsSpan()).ToArray()]);
        binary.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        binary.Headers.Add("Inference-Header-Content-Length", header.Length.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var okBinary = await Send("v2 binary", "POST", "/v2/models/diabetes-linear/versions/1/infer", binary);
        Assert.True(okBinary.Status == 200, okBinary.Body);
        answers.Remove(okBinary);

        // V2 failures, each carrying markers where the caller chooses text.
        var row = Floats(DiabetesRow);
        var mv = Floats([MarkerValue]);
        string[] badV2 =
        [
            $$"""{"id":"{{Marker("v2-id-unknown-input")}}","inputs":[{"name":"{{Marker("v2-tensor-name")}}","datatype":"FP32","shape":[1,10],"data":[{{row}}]}]}""",
            $$"""{"inputs":[{"name":"input","datatype":"FP32","shape":[1,10],"data":[{{row}}]}],"outputs":[{"name":"{{Marker("v2-output-name")}}"}]}""",
            $$"""{"inputs":[{"name":"{{Marker("v2-name-bad-datatype")}}","datatype":"{{Marker("v2-datatype")}}","shape":[1,10],"data":[{{row}}]}]}""",
            $$"""{"inputs":[{"name":"{{Marker("v2-name-bad-shape")}}","datatype":"FP32","shape":["{{Marker("v2-shape")}}"],"data":[{{row}}]}]}""",
            $$"""{"inputs":[{"name":"{{Marker("v2-name-short-data")}}","datatype":"FP32","shape":[1,10],"data":[{{mv}}]}]}""",
            $$"""{"inputs":[{"name":"{{Marker("v2-name-string-data")}}","datatype":"FP32","shape":[1,2],"data":[{{mv}},"{{Marker("v2-data-string")}}"]}]}""",
            $$"""{"inputs":[{"name":"{{Marker("v2-name-no-data")}}","datatype":"FP32","shape":[1,10]}]}""",
            $$"""{"inputs":[{"name":"input","datatype":"FP32","shape":[1,9],"data":[{{row[..row.LastIndexOf(',')]}}]}]}""",
            $$"""{"id":{{mv}},"inputs":[]}""",
            $$"""{"id":"{{Marker("v2-id-bad-parameters")}}","parameters":{"priority":"{{Marker("v2-priority")}}","timeout":"{{Marker("v2-timeout")}}"},"inputs":[{"name":"input","datatype":"FP32","shape":[1,10],"data":[{{row}}]}]}""",
            $$"""{"{{Marker("v2-json-key")}}":{{mv}},"inputs":"{{Marker("v2-inputs-string")}}"}""",
            $$"""{"id":"{{Marker("v2-id-truncated")}}","inputs":[{"name":"{{Marker("v2-name-truncated")}}","data":[{{mv}},""",
            $$"""{"inputs":[{"name":"input","datatype":"FP32","shape":[1,10],"data":[{{row}}]}] {{Marker("v2-trailing-garbage")}}""",
            $$"""{{Marker("v2-not-json")}} {{mv}}""",
        ];
        foreach (var (body, i) in badV2.Select((b, i) => (b, i)))
        {
            await Send($"bad v2 {i}", "POST", "/v2/models/diabetes-linear/infer", Json(body));
            await Send($"bad v2 {i}, other model", "POST", "/v2/models/breast-cancer-logreg/infer", Json(body));
            await Send($"bad v2 {i}, no such model", "POST", "/v2/models/no-such-model/infer", Json(body));
        }
        // A binary body whose JSON header names a marker tensor, and one whose length header is a marker.
        var badHeader = Encoding.UTF8.GetBytes($$$"""{"inputs":[{"name":"{{{Marker("v2-binary-name")}}}","datatype":"FP32","shape":[1,10],"parameters":{"binary_data_size":40}}]}""");
        var badBinary = new ByteArrayContent([.. badHeader, .. MemoryMarshal.AsBytes(DiabetesRow.AsSpan()).ToArray()]);
        badBinary.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        badBinary.Headers.Add("Inference-Header-Content-Length", badHeader.Length.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(400, (await Send("v2 binary, marker name", "POST", "/v2/models/diabetes-linear/infer", badBinary)).Status);
        var markerLength = new ByteArrayContent(badHeader);
        markerLength.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        markerLength.Headers.TryAddWithoutValidation("Inference-Header-Content-Length", Marker("v2-header-length"));
        await Send("v2 binary, marker length", "POST", "/v2/models/diabetes-linear/infer", markerLength);

        // Named records: a success whose record id is a marker (echoed in that answer and nowhere else), then records whose
        // values, units, field names and header are markers, and a body that is not JSON.
        var recordId = Marker("records-id");
        var goodRecord = $"\"age\":61,\"sex\":1,\"bmi\":25.8,\"bp\":90,\"s1\":280,\"s2\":195.4,\"s3\":55,\"s4\":5,\"s5\":4.9972";
        var okRecords = await Send("records", "POST", "/v2/models/diabetes-linear/records", Json($"{{\"records\":[{{\"id\":\"{recordId}\",{goodRecord},\"s6\":90}}]}}"));
        Assert.True(okRecords.Status == 200, okRecords.Body);
        Assert.Contains(recordId, okRecords.Body, StringComparison.Ordinal);
        answers.Remove(okRecords);
        var badRecords = await Send("bad records", "POST", "/v2/models/diabetes-linear/records", Json(
            $"{{\"records\":[{{{goodRecord},\"s6\":{mv}}},{{{goodRecord},\"s6\":{{\"value\":{mv},\"unit\":\"{Marker("records-unit")}\"}}}},{{{goodRecord},\"s6\":\"{Marker("records-string-value")}\",\"{Marker("records-field-name")}\":{mv}}},\"{Marker("records-not-an-object")}\"]}}"));
        answers[^1] = badRecords with { Error = true }; // a 422 whose per-record errors must name no value
        await Send("records csv", "POST", "/v2/models/diabetes-linear/records",
            Csv($"age,sex,bmi,bp,s1,s2,s3,s4,s5,s6 [{Marker("records-csv-unit")}],{Marker("records-csv-header")}\n61,1,25.8,90,280,195.4,55,5,4.9972,{mv},{Marker("records-csv-cell")}\n61,1,25.8,{Marker("records-csv-bad-cell")},280,195.4,55,5,4.9972,90,x\n"));
        answers[^1] = answers[^1] with { Error = true };
        await Send("records not json", "POST", "/v2/models/diabetes-linear/records", Json($"{{\"records\":[{{\"{Marker("records-truncated")}\":{mv}"));
        await Send("records, no such model", "POST", "/v2/models/no-such-model/records", Json($"{{\"records\":[{{\"s6\":{mv}}}]}}"));

        // FHIR: a success whose subject (reference and display) is a marker (echoed in the answer by design), then
        // Bundles whose Observation ids, texts, subject, unit code and values are markers, and malformed FHIR.
        string Observation(string loinc, string value, string unit, string subject) =>
            $$$"""{"resource":{"resourceType":"Observation","id":"{{{Marker("fhir-observation-id-" + loinc)}}}","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"{{{loinc}}}"}],"text":"{{{Marker("fhir-code-text-" + loinc)}}}"},"subject":{{{subject}}},"valueQuantity":{"value":{{{value}}},"unit":"{{{Marker("fhir-unit-text-" + loinc)}}}","system":"http://unitsofmeasure.org","code":"{{{unit}}}"}""" + "}}";
        string Bundle(string subject, string glucose, string glucoseUnit) =>
            $$$"""{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"{{{Marker("fhir-patient-id")}}}","name":[{"text":"{{{Marker("fhir-patient-name")}}}"}]}},""" +
            string.Join(',', Observation("30525-0", "61", "a", subject), Observation("39156-5", "25.8", "kg/m2", subject), Observation("8478-0", "90", "mm[Hg]", subject),
                Observation("2093-3", "280", "mg/dL", subject), Observation("2089-1", "195.4", "mg/dL", subject), Observation("2085-9", "55", "mg/dL", subject),
                Observation("9830-1", "5", "{ratio}", subject), Observation("2571-8", "148", "mg/dL", subject), Observation("2345-7", glucose, glucoseUnit, subject),
                $$$"""{"resource":{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"urn:medserve:feature","code":"sex"}]},"subject":{{{subject}}},"valueInteger":1}}""") + "]}";
        static StringContent Fhir(string json) => new(json, Encoding.UTF8, "application/fhir+json");
        var echoedSubject = $$"""{"reference":"Patient/{{Marker("fhir-subject-reference")}}","display":"{{Marker("fhir-subject-display")}}"}""";
        var okFhir = await Send("fhir", "POST", "/fhir/models/diabetes-linear/$predict", Fhir(Bundle(echoedSubject, "90", "mg/dL")));
        Assert.True(okFhir.Status == 200, okFhir.Body);
        answers.Remove(okFhir);
        var hiddenSubject = $$"""{"reference":"Patient/{{Marker("fhir-bad-subject-reference")}}","display":"{{Marker("fhir-bad-subject-display")}}"}""";
        Assert.Equal(422, (await Send("fhir out of range", "POST", "/fhir/models/diabetes-linear/$predict", Fhir(Bundle(hiddenSubject, mv, "mg/dL")))).Status);
        Assert.Equal(422, (await Send("fhir unknown unit", "POST", "/fhir/models/diabetes-linear/versions/1/$predict", Fhir(Bundle(hiddenSubject, "90", Marker("fhir-unit-code"))))).Status);
        Assert.Equal(400, (await Send("fhir invalid value", "POST", "/fhir/models/diabetes-linear/$predict", Fhir(Bundle(hiddenSubject, $"\"{Marker("fhir-value-string")}\"", "mg/dL")))).Status);
        await Send("fhir truncated", "POST", "/fhir/models/diabetes-linear/$predict", Fhir(Bundle(hiddenSubject, "90", "mg/dL")[..600]));
        await Send("fhir wrong resource", "POST", "/fhir/models/diabetes-linear/$predict", Fhir($$"""{"resourceType":"Patient","id":"{{Marker("fhir-wrong-resource-id")}}"}"""));
        await Send("fhir no such model", "POST", "/fhir/models/no-such-model/$predict", Fhir(Bundle(hiddenSubject, "90", "mg/dL")));
        await Send("fhir no such resource type", "POST", "/fhir/models/breast-cancer-logreg/$predict", Fhir($$"""{"resourceType":"{{Marker("fhir-resource-type")}}"}"""));

        // Jobs: a CSV job whose id, item ids and cells are markers (and a header column that is no feature), run to the end.
        var csvJob = Marker("csv-job-id");
        var csv = new StringBuilder("id,age,sex,bmi,bp,s1,s2,s3,s4,s5,s6," + Marker("csv-extra-header") + "\n");
        for (var i = 0; i < 3; i++)
        {
            csv.Append(Marker($"csv-item-id-{i}")).Append(',').Append(row).Append(',').Append(Marker($"csv-extra-cell-{i}")).Append('\n');
        }
        var submitted = await Send("csv job", "POST", $"/api/jobs?model=diabetes-linear&id={csvJob}", Csv(csv.ToString()));
        Assert.True(submitted.Status == 202, submitted.Body);
        // A tensor job whose id, item ids and data are markers.
        var tensorJob = Marker("tensor-job-id");
        var items = string.Join(',', Enumerable.Range(0, 3).Select(i =>
            $$"""{"id":"{{Marker($"tensor-item-id-{i}")}}","inputs":[{"name":"input","datatype":"FP32","shape":[1,10],"data":[{{row}}]}]}"""));
        var tensorBody = $$"""{"model":"diabetes-linear","id":"{{tensorJob}}","items":[{{items}}]}""";
        submitted = await Send("tensor job", "POST", "/api/jobs", Json(tensorBody));
        Assert.True(submitted.Status == 202, submitted.Body);
        // A job whose items fail at the model (marker tensor name, marker requested output): item errors are error messages too.
        var failing = $$"""{"model":"diabetes-linear","id":"leak-failing-{{_run}}","outputs":["{{Marker("job-output-name")}}"],"items":[{"id":"a","inputs":[{"name":"{{Marker("job-tensor-name")}}","datatype":"FP32","shape":[1,10],"data":[{{row}}]}]},{"id":"b","inputs":[{"name":"input","datatype":"FP32","shape":[1,10],"data":[{{row}}]}]}]}""";
        submitted = await Send("failing job", "POST", "/api/jobs", Json(failing));
        // Refused at submit (then its error is checked like any other) or run with failing items.
        var jobs = submitted.Status == 202 ? new[] { csvJob, tensorJob, $"leak-failing-{_run}" } : [csvJob, tensorJob];
        foreach (var id in jobs)
        {
            var state = "";
            for (var i = 0; i < 1200 && state is not ("Completed" or "Cancelled"); i++)
            {
                await Task.Delay(i == 0 ? 0 : 100);
                var job = await Send("job", "GET", $"/api/jobs/{id}");
                answers.RemoveAt(answers.Count - 1);
                Assert.True(job.Status == 200, job.Body);
                state = System.Text.Json.Nodes.JsonNode.Parse(job.Body)!["state"]!.GetValue<string>();
            }
            Assert.True(state == "Completed", $"job {id} is {state}; the node printed:\n{node.Output}");
            // Logged by a hash of its id.
            var logged = node.WhenPrinted($"Job {LogHash(id)} is Completed");
            Assert.True(await Task.WhenAny(logged, Task.Delay(TimeSpan.FromSeconds(30))) == logged, $"job {id} is not logged by its hash; the node printed:\n{node.Output}");
            foreach (var format in new[] { "json", "csv" })
            {
                var results = await Send("job results", "GET", $"/api/jobs/{id}/results?format={format}");
                Assert.Equal(200, results.Status);
                answers.RemoveAt(answers.Count - 1);
                if (id.StartsWith("leak-failing", StringComparison.Ordinal))
                {
                    // No marker id in this job: its whole results, item errors included, must be free of markers.
                    answers.Add(results with { What = $"failing job's results ({format})", Error = true });
                }
            }
        }
        // Job failures: another job under a taken id, unknown ids, duplicate item ids, bad tensors, CSV header and cell errors, bad JSON.
        await Send("job id taken", "POST", "/api/jobs", Json(tensorBody.Replace("\"data\":[61,", "\"data\":[62,", StringComparison.Ordinal)));
        Assert.Equal(409, answers[^1].Status);
        var unknownJob = Marker("unknown-job-id");
        await Send("unknown job", "GET", $"/api/jobs/{unknownJob}");
        await Send("unknown job", "POST", $"/api/jobs/{unknownJob}/cancel");
        await Send("unknown job", "GET", $"/api/jobs/{unknownJob}/results");
        await Send("unknown job", "DELETE", $"/api/jobs/{unknownJob}");
        var duplicate = Marker("duplicate-item-id");
        await Send("duplicate item ids", "POST", "/api/jobs", Json(
            $$"""{"model":"diabetes-linear","items":[{"id":"{{duplicate}}","inputs":[{"name":"input","datatype":"FP32","shape":[1,10],"data":[{{row}}]}]},{"id":"{{duplicate}}","inputs":[{"name":"input","datatype":"FP32","shape":[1,10],"data":[{{row}}]}]}]}"""));
        await Send("bad job item", "POST", "/api/jobs", Json(
            $$"""{"model":"diabetes-linear","id":"{{Marker("bad-item-job-id")}}","items":[{"id":"{{Marker("bad-item-id")}}","inputs":[{"name":"{{Marker("bad-item-tensor-name")}}","datatype":"FP32","shape":[1,10],"data":[{{mv}}]}]}]}"""));
        await Send("bad job id", "POST", $"/api/jobs?model=diabetes-linear&id={Marker("bad-job-id")}%20with%20a%20space", Csv(csv.ToString()));
        await Send("csv columns", "POST", $"/api/jobs?model=diabetes-linear&id={Marker("csv-columns-job-id")}&columns={Marker("csv-column-a")},{Marker("csv-column-b")}",
            Csv($"{Marker("csv-header-a")},{Marker("csv-header-b")}\n{mv},{mv}\n"));
        var named = $"age,sex,bmi,bp,s1,s2,s3,s4,s5,{Marker("csv-named-header")}";
        await Send("csv cell not a number", "POST", $"/api/jobs?model=diabetes-linear&columns={named}",
            Csv($"{named}\n61,1,25.8,90,280,195.4,55,5,4.9972,{Marker("csv-cell")}\n"));
        await Send("csv duplicate feature", "POST", "/api/jobs?model=diabetes-linear",
            Csv($"age,sex,bmi,bp,s1,s2,s3,s4,s5,s6,S6\n{Marker("csv-row-id")},1,25.8,90,280,195.4,55,5,4.9972,90,{mv}\n"));
        await Send("csv missing features", "POST", "/api/jobs?model=breast-cancer-logreg",
            Csv($"id,{Marker("csv-unmatched-header")}\n{Marker("csv-unmatched-id")},{mv}\n"));
        await Send("csv wrong width", "POST", "/api/jobs?model=diabetes-linear&columns=age",
            Csv($"age,{Marker("csv-width-header")}\n{mv},{Marker("csv-width-cell")}\n"));
        await Send("csv malformed", "POST", "/api/jobs?model=diabetes-linear",
            Csv($"id,age,sex,bmi,bp,s1,s2,s3,s4,s5,s6\n\"{Marker("csv-malformed")},\"1\"x,2\n"));
        await Send("csv ragged", "POST", "/api/jobs?model=diabetes-linear",
            Csv($"id,age,sex,bmi,bp,s1,s2,s3,s4,s5,s6\n{Marker("csv-ragged-id")},{mv}\n"));
        await Send("bad job json", "POST", "/api/jobs", Json($$"""{"model":"diabetes-linear","id":"{{Marker("bad-json-job-id")}}","items":[{"id":"{{Marker("bad-json-item")}}","""));
        await Send("job model not a string", "POST", "/api/jobs", Json($$"""{"model":{"{{Marker("job-model-key")}}":1},"items":[]}"""));

        // DICOM: patient name and id, descriptions, UIDs, the modality, the transfer syntax and multipart headers are markers;
        // a success and failures of every kind (parser, schema, series, multipart, a model that takes no DICOM).
        ByteArrayContent DicomBody(byte[] file, string type = "application/dicom")
        {
            var content = new ByteArrayContent(file);
            content.Headers.TryAddWithoutValidation("Content-Type", type);
            return content;
        }
        DicomTestFiles.Editor Patient() => DicomTestFiles.Editor.Open("MR_small.dcm")
            .Set(0x0010, 0x0010, "PN", Marker("dicom-patient-name"))
            .Set(0x0010, 0x0020, "LO", Marker("dicom-patient-id"))
            .Set(0x0008, 0x1030, "LO", Marker("dicom-study-description"))
            .Set(0x0008, 0x0080, "LO", Marker("dicom-institution"));
        var dicomOk = await Send("dicom", "POST", "/v2/models/ct-mr-classifier/infer", DicomBody(Patient().Write()));
        Assert.True(dicomOk.Status == 200, dicomOk.Body);
        byte[][] badDicom =
        [
            Patient().Set(0x0008, 0x0060, "CS", Marker("dicom-modality")).Write(),
            Patient().Set(0x0028, 0x0004, "CS", Marker("dicom-photometric")).Write(),
            Patient().Set(0x0028, 0x0008, "IS", Marker("dicom-frames")).Write(),
            Patient().Set(0x0028, 0x1053, "DS", Marker("dicom-slope")).Write(),
            Patient().Write(Marker("dicom-transfer-syntax")),
            Patient().Write()[..^200],
            Patient().SetUs(0x0028, 0x0010, 65535).Write(),
        ];
        foreach (var (file, i) in badDicom.Select((f, i) => (f, i)))
        {
            Assert.InRange((await Send($"bad dicom {i}", "POST", "/v2/models/ct-mr-classifier/infer", DicomBody(file))).Status, 400, 499);
        }
        await Send("dicom to a tabular model", "POST", "/v2/models/diabetes-linear/infer", DicomBody(Patient().Write()));
        var twoSeries = Encoding.ASCII.GetBytes("--b\r\nContent-Type: application/dicom\r\n\r\n")
            .Concat(Patient().Set(0x0020, 0x000E, "UI", Marker("dicom-series-a")).Write())
            .Concat(Encoding.ASCII.GetBytes("\r\n--b\r\nContent-Type: application/dicom\r\n\r\n"))
            .Concat(Patient().Set(0x0020, 0x000E, "UI", Marker("dicom-series-b")).Write())
            .Concat(Encoding.ASCII.GetBytes("\r\n--b--\r\n")).ToArray();
        await Send("dicom, two series", "POST", "/v2/models/ct-mr-classifier/infer", DicomBody(twoSeries, "multipart/related; type=\"application/dicom\"; boundary=b"));
        var partType = Encoding.ASCII.GetBytes($"--b\r\nContent-Type: {Marker("dicom-part-type")}\r\n\r\n").Concat(Patient().Write()).Concat(Encoding.ASCII.GetBytes("\r\n--b--\r\n")).ToArray();
        await Send("dicom, part type", "POST", "/v2/models/ct-mr-classifier/infer", DicomBody(partType, "multipart/related; type=\"application/dicom\"; boundary=b"));
        await Send("dicom, boundary", "POST", "/v2/models/ct-mr-classifier/infer", DicomBody(twoSeries, $"multipart/related; type=\"application/dicom\"; boundary={Marker("dicom-boundary")}"));
        await Send("dicom, related type", "POST", "/v2/models/ct-mr-classifier/infer", DicomBody(twoSeries, $"multipart/related; type=\"{Marker("dicom-related-type")}\"; boundary=b"));

        // Every public endpoint (failures mostly), with a marker query string and a body of marker-carrying bad JSON; and once without a valid key.
        foreach (var (method, path) in Endpoints)
        {
            var query = (path.Contains('?', StringComparison.Ordinal) ? "&" : "?") + "patient=" + Marker($"query-{method}-{path.Trim('/').Replace('/', '-').Replace('?', '-').Replace('=', '-')}");
            HttpContent? body = method == "GET" ? null : Json($$"""{"id":"{{Marker("endpoint-body-id")}}","name":"{{Marker("endpoint-body-name")}}","version":{{mv}},"items":[{"id":"{{Marker("endpoint-body-item")}}",""");
            await Send("endpoint", method, path + query, body);
            await Send("endpoint without a valid key", method, path + query, authorized: false);
        }
        // Forms and uploads with markers in every field.
        await Send("signin form", "POST", "/signin", new FormUrlEncodedContent([new("key", Marker("signin-key")), new("returnUrl", "/" + Marker("signin-return"))]));
        var manifest = File.ReadAllText(Path.Combine(Paths.Samples, "diabetes-linear", "manifest.json"));
        await Send("upload, bad manifest", "POST", "/api/models", new MultipartFormDataContent
        {
            { new StringContent(manifest[..(manifest.Length / 2)] + Marker("manifest-garbage")), "manifest", Marker("manifest-file-name") },
            { new ByteArrayContent(Encoding.UTF8.GetBytes(Marker("model-bytes"))), "model", Marker("model-file-name") },
        });
        await Send("new key, bad role", "POST", "/api/keys", Json($$"""{"name":"{{Marker("key-name")}}","role":"{{Marker("key-role")}}"}"""));
        await Send("deploy, bad body", "PUT", "/api/deployments/diabetes-linear/1", Json($$"""{"replicas":"{{Marker("replicas")}}","accelerator":"{{Marker("accelerator")}}"}"""));
        // Model names and versions are the operator's, not patient data: errors name them on purpose ("model 'm' has no version 'v'").
        await Send("default version, bad body", "PUT", "/api/models/diabetes-linear/default", Json($$"""{"version":"99","{{Marker("default-version-key")}}":"{{Marker("default-version-value")}}"}"""));

        // Still serving after all of it, so nothing above was cut short by a crash.
        Assert.Equal(200, (await Send("live", "GET", "/v2/health/ready")).Status);
        using var metricsResponse = await node.Http.GetAsync("/metrics");
        var metrics = await metricsResponse.Content.ReadAsStringAsync();
        Assert.True(metricsResponse.IsSuccessStatusCode, metrics);
        // A graceful stop flushes the console logger, so the output holds every line the node wrote.
        await node.StopGracefullyAsync();
        var log = node.Output;
        Assert.Contains($"Job {LogHash(tensorJob)} submitted", log, StringComparison.Ordinal);

        var found = new List<string>();
        void Check(string where, string text)
        {
            if (text.Contains($"LEAK-{_run}", StringComparison.Ordinal))
            {
                var which = _markers.Keys.Where(m => text.Contains(m, StringComparison.Ordinal)).Select(m => _markers[m]);
                var at = text.IndexOf($"LEAK-{_run}", StringComparison.Ordinal);
                found.Add($"{where}: {string.Join(", ", which)} in ...{text[Math.Max(0, at - 160)..Math.Min(text.Length, at + 80)]}...");
            }
            if (text.Contains(MarkerValueText, StringComparison.Ordinal))
            {
                var at = text.IndexOf(MarkerValueText, StringComparison.Ordinal);
                found.Add($"{where}: the marker value in ...{text[Math.Max(0, at - 160)..Math.Min(text.Length, at + 80)]}...");
            }
        }
        Check("the node's log", log);
        Check("/metrics", metrics);
        // The stop flushed the trace exporter: every span of every request above, as OTLP protobuf (strings in UTF-8).
        var spans = Encoding.UTF8.GetString(otlp.Received());
        Assert.True(spans.Contains("medserve.run", StringComparison.Ordinal) && spans.Contains("IJobGrain", StringComparison.Ordinal),
            $"the node exported no inference or job spans ({otlp.Exports} exports received)");
        Check("the exported spans", spans);
        var errors = answers.Where(a => a.Error).ToList();
        Assert.True(errors.Count > 100, $"only {errors.Count} failing answers were checked");
        foreach (var answer in errors)
        {
            Check($"the answer to {answer.What} ({answer.Status})", answer.Body);
        }
        Assert.True(found.Count == 0, $"{found.Count} leaks:\n" + string.Join('\n', found));
        Directory.Delete(import, recursive: true);
        Directory.Delete(data, recursive: true);
    }
}
