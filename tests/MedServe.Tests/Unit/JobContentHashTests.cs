using System.Security.Cryptography;
using System.Text;
using MedServe.Grains.Jobs;

namespace MedServe.Tests.Unit;

/// <summary>
/// A job's content hash is stored with it and compared when the same submit comes again (idempotent submit), so it must
/// stay the same bytes across versions: here, against the hash as it was first written (each text as UTF-8 and a zero).
/// </summary>
public sealed class JobContentHashTests
{
    [Fact]
    public void The_content_hash_is_the_one_stored_jobs_were_given()
    {
        var submission = new JobSubmission
        {
            Model = "breast-cancer-logreg",
            Version = null,
            Outputs = ["probabilities", "label"],
            Items =
            [
                new JobItem("r-0", [TensorTypes.Create<float>("input", [1, 30], new float[30])]),
                new JobItem("Ünïcode id", [TensorTypes.Create<float>("input", [2, 3], [1, 2, 3, 4, 5, 6]), TensorTypes.Create<long>("mask", [2], [7, 8])]),
                new JobItem("bad", []) { Error = "line 4: 'mean radius' is not a number" },
            ],
        };

        Assert.Equal(AsFirstWritten(submission), JobGrain.ContentHash(submission));
        Assert.NotEqual(JobGrain.ContentHash(submission), JobGrain.ContentHash(submission with { Items = submission.Items[..2] }));
    }

    private static string AsFirstWritten(JobSubmission submission)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Text(string? text)
        {
            hash.AppendData(Encoding.UTF8.GetBytes(text ?? "\0"));
            hash.AppendData([0]);
        }
        Text(submission.Model);
        Text(submission.Version);
        Text(string.Join(',', submission.Outputs ?? []));
        foreach (var item in submission.Items)
        {
            Text(item.Id);
            if (item.Error is not null)
            {
                Text(item.Error);
            }
            foreach (var tensor in item.Inputs)
            {
                Text(tensor.Name);
                Text(tensor.Datatype.ToString());
                Text(string.Join(',', tensor.Shape));
                hash.AppendData(tensor.Data);
            }
        }
        return Convert.ToHexString(hash.GetHashAndReset());
    }
}
